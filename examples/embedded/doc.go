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
// As shipped, it bounds what one anonymous client can take: requests for a
// Host other than the listen address, localhost, 127.0.0.1 and ::1 get 403
// (DNS rebinding; name the host clients use with -allow-host), one client
// address holds at most 256 TCP connections (-max-conns-per-addr), the
// HTTP server has read, write and idle timeouts, and the broker keeps at
// most 128 packets (64 queued, 64 unacknowledged) of at most -max-message
// bytes (128 KiB) for a subscriber that does not read or acknowledge.
// Metrics, when asked for, are on a listener of their own.
//
// Flags: -allow-origin PATTERN, -allow-host PATTERN and -trusted-proxy CIDR
// (all repeatable), -client-addr-header NAME, -max-conns N,
// -max-streams-per-addr N, -max-frame BYTES and -ping DURATION set the
// handler's policy; -max-conns-per-addr N caps TCP connections per client
// address; -max-message BYTES caps MQTT packets; -metrics-listen ADDR
// serves Prometheus metrics at /metrics on a listener of their own (a
// loopback address such as 127.0.0.1:9090), never on -listen.
//
// Once it serves, the program prints one line with the URLs on stdout; logs
// go to stderr. SIGINT or SIGTERM stops it: the HTTP server first (plain
// requests still in progress get half a second), then the WebSocket
// connections (closed with 1001), then the broker.
package main
