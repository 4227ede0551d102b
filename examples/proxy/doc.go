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
// address to the broker; -allow-origin PATTERN and -trusted-proxy CIDR
// (both repeatable), -max-conns N, -max-frame BYTES and -ping DURATION set
// the handler's policy; -metrics serves Prometheus metrics at /metrics.
//
// Once it serves, the program prints one line with the URL on stdout; logs
// go to stderr. SIGINT or SIGTERM stops it: the HTTP server first, then the
// WebSocket connections (closed with 1001, which closes their broker
// connections).
package main
