module github.com/mqttws/mqttws

go 1.26.0

require (
	github.com/gobwas/httphead v0.1.0
	github.com/gobwas/ws v1.5.0
	github.com/pires/go-proxyproto v0.15.0
)

require github.com/klauspost/compress v1.20.4
