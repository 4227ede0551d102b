package mqttws

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/gobwas/ws"
)

// Defaults of the Handler fields whose zero value means "the default".
const (
	DefaultReadBufferSize = 4096
	DefaultPingInterval   = 30 * time.Second
	DefaultCloseTimeout   = 5 * time.Second
)

// Handler is an http.Handler that serves MQTT over WebSocket: it upgrades
// each request, negotiates the MQTT subprotocol and hands the connection, as
// a *Stream, to Backend.
//
// The zero value of every field but Backend works. A Handler must not be
// copied after first use, and its fields must not change once it serves.
type Handler struct {
	// Backend serves every accepted stream. A Handler without one refuses
	// upgrades with 500.
	Backend Backend

	// Subprotocols lists the WebSocket subprotocols served, most preferred
	// first. Only one the client offered is ever chosen. Nil means
	// DefaultSubprotocols(): "mqtt", then "mqttv3.1".
	Subprotocols []string

	// AllowNoSubprotocol accepts clients that offer no subprotocol at all
	// (some embedded and test clients). By default they are refused with 400.
	// A client offering only protocols not in Subprotocols is always refused.
	AllowNoSubprotocol bool

	// MaxFrameSize is the largest frame payload accepted from a client, in
	// bytes; a longer frame closes the connection with 1009. Zero means no
	// limit: frames are streamed, never buffered whole, so their size does
	// not bound memory.
	MaxFrameSize int64

	// WriteFrameSize splits a Stream.Write larger than it into frames of at
	// most this many bytes. Zero sends each Write as one frame.
	WriteFrameSize int

	// ReadBufferSize is the size of the pooled buffer a connection reads
	// frame headers and small payloads into while data flows (at least 256).
	// An idle connection holds none. Zero means DefaultReadBufferSize.
	ReadBufferSize int

	// PingInterval is how long a connection may go without sending anything
	// before the handler sends a WebSocket ping, so that proxies (nginx drops
	// connections idle for 60 s by default) and NATs keep it open. Zero means
	// DefaultPingInterval; a negative value sends no pings.
	PingInterval time.Duration

	// CloseTimeout bounds each step of a close: sending the close frame, and
	// waiting for the client's reply before the TCP connection is closed.
	// Zero means DefaultCloseTimeout.
	CloseTimeout time.Duration

	// Logger receives a line for each refused handshake and each ended
	// connection (at debug level), and for backend panics (at error level).
	// Nil means slog.Default().
	Logger *slog.Logger

	pool bufferPool

	mu           sync.Mutex
	streams      map[*Stream]struct{}
	shuttingDown bool
	active       sync.WaitGroup
}

// ServeHTTP upgrades the request to a WebSocket and serves it; see Handler.
// Requests that are not WebSocket upgrades get a plain-text HTTP error and are
// not hijacked.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	prefs := h.Subprotocols
	if prefs == nil {
		prefs = DefaultSubprotocols()
	}
	subprotocol, refusal := checkHandshake(r, prefs, h.AllowNoSubprotocol)
	switch {
	case refusal != nil:
	case h.Backend == nil:
		refusal = refuse(http.StatusInternalServerError, "no Backend configured")
	case !canHijack(w):
		refusal = refuse(http.StatusInternalServerError, "the http.ResponseWriter cannot hijack the connection (a middleware that hides Hijack and Unwrap?)")
	case h.isShuttingDown():
		refusal = refuse(http.StatusServiceUnavailable, "server shutting down")
	}
	if refusal != nil {
		h.logger().Debug("mqttws: handshake refused", "remote", r.RemoteAddr, "status", refusal.status, "reason", refusal.reason)
		for k, v := range refusal.header {
			w.Header()[k] = v
		}
		http.Error(w, refusal.reason, refusal.status)
		return
	}

	var upgrader ws.HTTPUpgrader
	if subprotocol != "" {
		upgrader.Protocol = func(p string) bool { return p == subprotocol }
	}
	conn, rw, _, err := upgrader.Upgrade(r, w)
	if err != nil {
		if conn != nil {
			_ = conn.Close()
		}
		h.logger().Debug("mqttws: upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	// Bytes the client sent right after its request may already sit in
	// net/http's reader; keep them and drop its 8 KiB of buffers.
	var src io.Reader = conn
	if n := rw.Reader.Buffered(); n > 0 {
		early, _ := rw.Reader.Peek(n)
		src = &prefixedReader{prefix: bytes.Clone(early), src: conn}
	}

	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	s := newStream(conn, src, streamConfig{
		pool:           h.bufferPool(),
		subprotocol:    subprotocol,
		maxFrameSize:   h.MaxFrameSize,
		writeFrameSize: h.WriteFrameSize,
		pingInterval:   orDefault(h.PingInterval, DefaultPingInterval),
		closeTimeout:   orDefault(h.CloseTimeout, DefaultCloseTimeout),
		cancel:         cancel,
	})
	if !h.track(s) {
		_ = s.CloseWith(CloseGoingAway, "server shutting down")
		return
	}
	// The stream runs in its own goroutine so that net/http's per-request
	// state (buffers, request, response) is freed once ServeHTTP returns.
	go h.serve(ctx, s)
}

// serve runs the backend on s and closes s after it.
func (h *Handler) serve(ctx context.Context, s *Stream) {
	defer h.untrack(s)
	err := h.runBackend(ctx, s)
	code, reason := closeCodeOf(err)
	_ = s.CloseWith(code, reason)
	<-s.done
	h.logger().Debug("mqttws: connection ended",
		"remote", s.RemoteAddr().String(),
		"subprotocol", s.subprotocol,
		"duration", time.Since(s.start),
		"bytes_in", s.bytesIn.Load(),
		"bytes_out", s.bytesOut.Load(),
		"close_sent", s.codeSent.Load(),
		"close_received", s.codeRcvd.Load(),
		"backend_err", err,
	)
}

// runBackend calls the backend, turning a panic into an error: the stream
// runs outside net/http's own recovery.
func (h *Handler) runBackend(ctx context.Context, s *Stream) (err error) {
	defer func() {
		if p := recover(); p != nil {
			h.logger().Error("mqttws: backend panic", "remote", s.RemoteAddr().String(), "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("mqttws: backend panic: %v", p)
		}
	}()
	return h.Backend.ServeStream(ctx, s)
}

func (h *Handler) bufferPool() *bufferPool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pool.size == 0 {
		h.pool.size = max(orDefault(h.ReadBufferSize, DefaultReadBufferSize), minReadBufferSize)
	}
	return &h.pool
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

func orDefault[T int | int64 | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	if v < 0 {
		return 0
	}
	return v
}

// canHijack reports whether w, or a writer it wraps, can hijack.
func canHijack(w http.ResponseWriter) bool {
	for {
		if _, ok := w.(http.Hijacker); ok {
			return true
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return false
		}
		w = u.Unwrap()
	}
}

// prefixedReader returns prefix, then reads from src.
type prefixedReader struct {
	prefix []byte
	src    io.Reader
}

func (p *prefixedReader) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.src.Read(b)
}

var _ net.Conn = (*Stream)(nil)
