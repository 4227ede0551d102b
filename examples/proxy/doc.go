// Command proxy is a WebSocket gateway in front of an existing MQTT broker:
// each MQTT over WebSocket connection becomes one TCP connection to the
// broker.
//
// Usage:
//
//	go run ./examples/proxy -listen 127.0.0.1:8080 -upstream 127.0.0.1:1883 [-path /mqtt] [-tls-cert FILE -tls-key FILE]
//
// -upstream (the broker's host:port) is required; -listen defaults to
// 127.0.0.1:8080 and -path to /mqtt. Clients connect to ws://LISTEN/PATH
// (wss:// with TLS) with the subprotocol "mqtt" (MQTT 3.1.1 and 5.0) or
// "mqttv3.1"; when the broker cannot be reached they are closed with 1013
// (Try Again Later).
//
// Flags: -upstream takes several comma-separated addresses (the nodes of a
// broker cluster: clients are spread over them, and a node that refuses or
// times out is skipped); -proxy-protocol off|v1|v2 announces each client's
// address to the broker; -allow-origin PATTERN, -allow-host PATTERN and
// -trusted-proxy CIDR (all repeatable), -client-addr-header NAME,
// -max-conns N, -max-streams-per-addr N, -max-frame BYTES and -ping
// DURATION set the handler's policy; -max-conns-per-addr N (default 256)
// caps TCP connections per client address; -metrics-listen ADDR serves
// Prometheus metrics at /metrics on a listener of their own (a loopback
// address such as 127.0.0.1:9090), never on -listen; -compress compresses
// messages with permessage-deflate for clients that offer it.
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
// the process serves; /readyz answers 200 "ready" while a broker node
// accepts a TCP connection within a second (checked at most once a second,
// however many probes), 503 "not ready: no broker node reachable"
// otherwise. Neither is logged.
//
// Requests for a Host other than the listen address, localhost, 127.0.0.1
// and ::1 get 403, which defeats DNS rebinding: behind a reverse proxy or a
// DNS name, give the name clients use with -allow-host.
//
// Once it serves, the program prints one line with the URL on stdout; logs
// go to stderr. SIGINT or SIGTERM stops it: the HTTP server first (plain
// requests still in progress get half a second), then the WebSocket
// connections (closed with 1001, which closes their broker connections).
package main
