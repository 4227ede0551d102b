// Command embedded runs an MQTT broker inside a go-chi/chi web app and serves
// it over WebSocket, next to a small page that publishes and shows messages.
//
// Usage:
//
//	go run ./examples/embedded [-listen 127.0.0.1:8080] [-path /mqtt]
//
// The broker is mochi-mqtt (github.com/mochi-mqtt/server/v2), in process,
// reached only through an mqttws.Handler mounted at -path; it lets every
// client in. Open the page at / in two browser tabs: each one connects with
// its own client id, subscribes to demo/chat, and shows what anyone
// publishes there. Any MQTT over WebSocket client can connect to the same
// URL, ws://HOST/mqtt by default.
//
// Flags: -allow-origin PATTERN and -trusted-proxy CIDR (both repeatable),
// -max-conns N, -max-frame BYTES and -ping DURATION set the handler's
// policy; -metrics serves Prometheus metrics at /metrics.
//
// Once it serves, the program prints one line with the URLs on stdout; logs
// go to stderr. SIGINT or SIGTERM stops it: the HTTP server first, then the
// WebSocket connections (closed with 1001), then the broker.
package main
