// Package frameio measures WebSocket frame I/O on the server side: reading
// and unmasking the frames a client sends, and writing frames to it, over a
// real loopback TCP connection.
//
// Four servers are measured with one harness: mqttws's Stream behind a real
// mqttws.Handler and http.Server, a gorilla/websocket bridge shaped like
// mochi-mqtt's WebSocket listener, coder/websocket's NetConn, and plain TCP
// as the ceiling. The client is the same for all of them: a raw TCP writer
// of pre-masked frames (reads), or a raw TCP reader that discards what comes
// (writes), so that only the server side differs.
//
// The benchmark bodies are plain func(*testing.B): frameio_test.go runs them
// under go test -bench, and cmd/bench runs them with testing.Benchmark.
package frameio
