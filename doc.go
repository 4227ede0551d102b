// Package mqttws serves MQTT over WebSocket (RFC 6455) from a net/http
// server.
//
// A [Handler] upgrades each request with github.com/gobwas/ws, negotiates the
// MQTT subprotocol ("mqtt" for MQTT 3.1.1 and 5.0, "mqttv3.1" for MQTT 3.1),
// and turns the connection into a [Stream]: a net.Conn whose bytes are the
// MQTT byte stream, whatever the client's framing. The stream goes to a
// [Backend]: a dial to an existing broker (package backend) or an in-process
// broker such as mochi-mqtt (package backend/mochi).
//
// The rules of MQTT section 6 hold throughout: only binary frames carry data
// (a text frame closes the connection with 1003, MQTT-6.0.0-1), and MQTT
// packets are never assumed to line up with frames (MQTT-6.0.0-2).
//
// The handler mounts wherever an http.Handler does:
//
//	mux.Handle("/mqtt", &mqttws.Handler{Backend: backend.Dial("127.0.0.1:1883")})
package mqttws
