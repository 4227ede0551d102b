module github.com/mqttws/mqttws/internal/soak

go 1.26.0

require (
	github.com/gobwas/ws v1.5.0
	github.com/mochi-mqtt/server/v2 v2.7.9
	github.com/mqttws/mqttws v0.0.0
	github.com/mqttws/mqttws/backend/mochi v0.0.0
)

require (
	github.com/gobwas/httphead v0.1.0 // indirect
	github.com/gorilla/websocket v1.5.3 // indirect
	github.com/klauspost/compress v1.20.4 // indirect
	github.com/rs/xid v1.4.0 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	gopkg.in/check.v1 v1.0.0-20180628173108-788fd7840127 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)

replace (
	github.com/mqttws/mqttws => ../..
	github.com/mqttws/mqttws/backend/mochi => ../../backend/mochi
	github.com/mqttws/mqttws/internal/pahotest => ../pahotest
)
