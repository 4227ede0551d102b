package options

import "strings"

// WebSocket over HTTP/2 (RFC 8441). Served over TLS, an http.Server speaks
// HTTP/2 to browsers for pages; it carries WebSockets too only when it
// advertises SETTINGS_ENABLE_CONNECT_PROTOCOL, and mqttws.Handler then
// serves the extended CONNECT streams with nothing more to set. In Go 1.26
// that takes the environment variable GODEBUG=http2xconnect=1 when the
// program starts (net/http reads it at init: a //go:debug line or
// os.Setenv in main is too late). From Go 1.27 it is a setting of the
// server, http.HTTP2Config.EnableConnectProtocol, and the examples can set
// it themselves.

// xconnectDebug is the GODEBUG setting that turns extended CONNECT on in Go
// 1.26's HTTP/2 server.
const xconnectDebug = "http2xconnect=1"

// http2WebSockets tells whether the public listener carries WebSockets over
// HTTP/2, and why, for the log line at start. tlsOn is whether it serves
// TLS; godebug is the GODEBUG environment variable.
func http2WebSockets(tlsOn bool, godebug string) (on bool, why string) {
	switch {
	case !tlsOn:
		return false, "no TLS: browsers speak HTTP/2 only over TLS (-tls-cert and -tls-key)"
	case strings.Contains(godebug, "http2server=0"):
		return false, "GODEBUG=http2server=0 turns HTTP/2 off: pages and WebSockets use HTTP/1.1"
	// The test net/http makes (net/http/h2_bundle.go, func init).
	case !strings.Contains(godebug, xconnectDebug):
		return false, "pages are served over HTTP/2 and WebSockets over HTTP/1.1: start the program with GODEBUG=" + xconnectDebug + " in its environment to carry WebSockets on the pages' HTTP/2 connections (Go 1.26)"
	}
	return true, "TLS, and GODEBUG=" + xconnectDebug + ": browsers that speak RFC 8441 open their WebSockets on the pages' HTTP/2 connection"
}
