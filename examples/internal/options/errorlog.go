package options

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// connLogInterval spaces the log lines of one kind about failed client
// connections.
const connLogInterval = 10 * time.Second

// connErrorPrefixes start the lines net/http and its HTTP/2 server log for
// each client connection that fails: a failed TLS handshake (a scanner, a
// plain HTTP request on the TLS port, a client that does not trust the
// certificate), a bad HTTP/2 preface, an HTTP/2 protocol error.
var connErrorPrefixes = []string{
	"http: TLS handshake error",
	"http2: server: error reading preface",
	"http2: server connection error",
	"http2: server closing client connection",
	"http2: received GOAWAY",
	"timeout waiting for SETTINGS frames",
}

// connErrorLog is the slog.Handler of the servers' ErrorLog. Each failed
// client connection makes net/http log a line, which a flood of
// connections would turn into a flood of log: it lets through at most one
// line of each kind (connErrorPrefixes) per 10 s, with the count of those
// left out. Other lines pass.
type connErrorLog struct {
	slog.Handler
	state *connErrorLogState // shared by the handlers WithAttrs and WithGroup derive
}

type connErrorLogState struct {
	mu      sync.Mutex
	last    []time.Time // by kind, as connErrorPrefixes
	skipped []int
}

func newConnErrorLog(h slog.Handler) connErrorLog {
	return connErrorLog{Handler: h, state: &connErrorLogState{
		last:    make([]time.Time, len(connErrorPrefixes)),
		skipped: make([]int, len(connErrorPrefixes)),
	}}
}

func (h connErrorLog) Handle(ctx context.Context, r slog.Record) error {
	for i, prefix := range connErrorPrefixes {
		if !strings.HasPrefix(r.Message, prefix) {
			continue
		}
		st := h.state
		st.mu.Lock()
		now := time.Now()
		if now.Sub(st.last[i]) < connLogInterval {
			st.skipped[i]++
			st.mu.Unlock()
			return nil
		}
		skipped := st.skipped[i]
		st.last[i], st.skipped[i] = now, 0
		st.mu.Unlock()
		if skipped > 0 {
			r.AddAttrs(slog.Int("like_lines_left_out", skipped))
		}
		break
	}
	return h.Handler.Handle(ctx, r)
}

func (h connErrorLog) WithAttrs(attrs []slog.Attr) slog.Handler {
	return connErrorLog{Handler: h.Handler.WithAttrs(attrs), state: h.state}
}

func (h connErrorLog) WithGroup(name string) slog.Handler {
	return connErrorLog{Handler: h.Handler.WithGroup(name), state: h.state}
}
