module github.com/mqttws/mqttws/interop

go 1.26.0

require (
	github.com/coder/websocket v1.8.15
	github.com/eclipse/paho.golang v0.23.0
	github.com/eclipse/paho.mqtt.golang v1.5.1
	github.com/gobwas/ws v1.5.0
	github.com/gorilla/websocket v1.5.3
	github.com/mochi-mqtt/server/v2 v2.7.9
	github.com/mqttws/mqttws v0.0.0
	github.com/mqttws/mqttws/backend/mochi v0.0.0
	github.com/mqttws/mqttws/internal/pahotest v0.0.0
	go.uber.org/goleak v1.3.0
	golang.org/x/net v0.59.0
)

require (
	github.com/gobwas/httphead v0.1.0 // indirect
	github.com/klauspost/compress v1.20.4 // indirect
	github.com/pires/go-proxyproto v0.15.0 // indirect
	github.com/rs/xid v1.4.0 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/sync v0.23.0 // indirect
	golang.org/x/text v0.42.0 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)

replace (
	github.com/mqttws/mqttws => ../
	github.com/mqttws/mqttws/backend/mochi => ../backend/mochi
	github.com/mqttws/mqttws/internal/pahotest => ../internal/pahotest
)
