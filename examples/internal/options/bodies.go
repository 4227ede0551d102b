package options

import (
	"net/http"
	"time"
)

// refuseBodies answers 413 to a request that comes with a body, and closes
// its connection at once: no route of the examples takes a body. Without it,
// net/http reads up to 256 KiB of a body the handler left unread before it
// reuses or closes the connection, and a client that announces a body and
// never sends it would hold the connection until the server's ReadTimeout,
// and keep a graceful shutdown waiting.
//
// HTTP/2 requests pass: a body there is its stream's, which net/http resets
// when the handler returns without reading it while the connection's other
// streams go on; and a WebSocket over HTTP/2 (an extended CONNECT) has a
// body of unknown length, its frames.
func refuseBodies(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// -1 is a chunked body of unknown length.
		if r.ContentLength == 0 || r.ProtoMajor >= 2 {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Connection", "close")
		http.Error(w, "request bodies are not accepted here", http.StatusRequestEntityTooLarge)
		rc := http.NewResponseController(w)
		_ = rc.Flush()
		// A read deadline in the past makes net/http's read of the unread
		// body fail at once, and the connection close.
		_ = rc.SetReadDeadline(time.Unix(1, 0))
	})
}
