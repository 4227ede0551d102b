// Command embedded runs an MQTT broker inside a go-chi/chi web app and serves
// it over WebSocket, next to a small page that publishes and shows messages.
//
// Usage:
//
//	go run ./examples/embedded [-listen 127.0.0.1:8080] [-path /mqtt] [-tls-cert FILE -tls-key FILE]
//
// The broker is mochi-mqtt (github.com/mochi-mqtt/server/v2), in process,
// reached only through an mqttws.Handler mounted at -path; it lets every
// client in. Open the page at / in two browser tabs: each one connects with
// its own client id, subscribes to demo/chat, and shows what anyone
// publishes there. Any MQTT over WebSocket client can connect to the same
// URL, ws://HOST/mqtt by default (wss://HOST/mqtt with TLS).
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
// loopback address such as 127.0.0.1:9090), never on -listen; -compress
// compresses messages with permessage-deflate for clients that offer it.
//
// TLS: with -tls-cert FILE -tls-key FILE (PEM; the certificate file holds
// the chain after the certificate) it serves HTTPS and wss on -listen,
// HTTP/2 included, as net/http does over TLS. The files are checked every
// -tls-poll (5s) and loaded again when they changed, and at once on SIGHUP:
// connections keep the certificate they were made with, new handshakes get
// the new one, and a pair that does not load (a key that does not match,
// a file missing or half written) leaves the old one in service with a
// warning. At start, a file that cannot be read or a key that does not
// match is an error (exit status 1). Started with GODEBUG=http2xconnect=1
// in its environment, it takes WebSockets over HTTP/2 too (RFC 8441):
// browsers then open them on the page's own connection. That is Go 1.26's
// switch; Go 1.27 has a server setting for it,
// http.HTTP2Config.EnableConnectProtocol. A log line at start says whether
// WebSocket over HTTP/2 is on, or why not.
//
// Health checks, on -listen, for any Host: /healthz answers 200 "ok" while
// the process serves; /readyz answers 200 "ready" while the broker serves,
// 503 "not ready: REASON" otherwise. Neither is logged.
//
// Once it serves, the program prints one line with the URLs on stdout; logs
// go to stderr. SIGINT or SIGTERM stops it: the HTTP server first (plain
// requests still in progress get half a second), then the WebSocket
// connections (closed with 1001), then the broker.
package main
