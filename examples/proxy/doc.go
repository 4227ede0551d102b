// Command proxy is a WebSocket gateway in front of an existing MQTT broker:
// each MQTT over WebSocket connection becomes one TCP connection to the
// broker.
//
// Usage:
//
//	go run ./examples/proxy -listen 127.0.0.1:8080 -upstream 127.0.0.1:1883 [-path /mqtt]
//
// -upstream (the broker's host:port) is required; -listen defaults to
// 127.0.0.1:8080 and -path to /mqtt. Clients connect to ws://LISTEN/PATH
// with the subprotocol "mqtt" (MQTT 3.1.1 and 5.0) or "mqttv3.1"; when the
// broker cannot be reached they are closed with 1013 (Try Again Later).
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
// address such as 127.0.0.1:9090), never on -listen.
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
