module github.com/mqttws/mqttws/benchmarks

go 1.26.0

replace (
	github.com/mqttws/mqttws => ../
	github.com/mqttws/mqttws/backend/mochi => ../backend/mochi
	github.com/mqttws/mqttws/internal/pahotest => ../internal/pahotest
	github.com/mqttws/mqttws/interop => ../interop
)

require (
	github.com/coder/websocket v1.8.15
	github.com/eclipse/paho.mqtt.golang v1.5.1
	github.com/gobwas/ws v1.5.0
	github.com/gorilla/websocket v1.5.3
	github.com/klauspost/compress v1.20.4
	github.com/mochi-mqtt/server/v2 v2.7.9
	github.com/mqttws/mqttws v0.0.0
	github.com/mqttws/mqttws/backend/mochi v0.0.0
	github.com/mqttws/mqttws/internal/pahotest v0.0.0
	github.com/mqttws/mqttws/interop v0.0.0
	golang.org/x/sys v0.48.0
)

require (
	github.com/gobwas/httphead v0.1.0 // indirect
	github.com/pires/go-proxyproto v0.15.0 // indirect
	github.com/rs/xid v1.4.0 // indirect
	golang.org/x/net v0.59.0 // indirect
	golang.org/x/sync v0.23.0 // indirect
	golang.org/x/text v0.42.0 // indirect
	gopkg.in/check.v1 v1.0.0-20180628173108-788fd7840127 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)
