module github.com/mqttws/mqttws/backend/mochi

go 1.26.0

require (
	github.com/gobwas/ws v1.5.0
	github.com/gorilla/websocket v1.5.3
	github.com/mochi-mqtt/server/v2 v2.7.9
	github.com/mqttws/mqttws v0.0.0
	github.com/mqttws/mqttws/internal/pahotest v0.0.0
	go.uber.org/goleak v1.3.0
)

require (
	github.com/eclipse/paho.mqtt.golang v1.5.1 // indirect
	github.com/gobwas/httphead v0.1.0 // indirect
	github.com/klauspost/compress v1.20.4 // indirect
	github.com/rs/xid v1.4.0 // indirect
	github.com/stretchr/testify v1.12.1 // indirect
	golang.org/x/net v0.59.0 // indirect
	golang.org/x/sync v0.23.0 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)

replace (
	github.com/mqttws/mqttws => ../..
	github.com/mqttws/mqttws/internal/pahotest => ../../internal/pahotest
)
