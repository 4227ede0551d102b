package mqttws

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/mqttws/mqttws/internal/park"
)

// Defaults of the Handler fields whose zero value means "the default".
const (
	DefaultReadBufferSize   = 4096
	DefaultPingInterval     = 30 * time.Second
	DefaultPongTimeout      = 30 * time.Second
	DefaultWriteTimeout     = 30 * time.Second
	DefaultFirstDataTimeout = 10 * time.Second
	DefaultCloseTimeout     = 5 * time.Second
)

// retryAfterSeconds is the Retry-After a client refused for load gets.
const retryAfterSeconds = "5"

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

	// AllowedOrigins lists the host patterns of the browser origins allowed
	// besides the handler's own: globs in path.Match syntax on the origin's
	// host name ("*.example.com", "app.example.org") or on host:port
	// ("localhost:3000"); "*" allows every origin, "null" the opaque origin.
	// Requests without an Origin header (clients that are not browsers) and
	// same-origin requests are always allowed; others are refused with 403,
	// which blocks cross-site WebSocket hijacking.
	AllowedOrigins []string

	// AllowedHosts lists the host names this handler answers to, as
	// patterns matched against the request's Host header in the syntax of
	// AllowedOrigins ("app.example.com", "*.example.com", "localhost:8080").
	// A request for any other host is refused with 403. Empty: any host. Set
	// it on a server reachable from a browser: a DNS rebinding page controls
	// both Host and Origin, so only a Host allowlist tells it apart from a
	// same-origin page.
	AllowedHosts []string

	// Authorize, when set, decides on each request before the upgrade, from
	// its header, cookies or query. An error refuses the request: a
	// *HTTPError with its status (401, 403…) and reason, any other error with
	// 403. The returned context, when not nil, becomes the parent of the
	// backend's context, so that an identity stored in it reaches the
	// backend.
	Authorize func(r *http.Request) (context.Context, error)

	// TrustedProxies lists the networks of the reverse proxies whose
	// ClientAddrHeader is believed. When the TCP peer is in one of them,
	// Stream.RemoteAddr reports the client's address from that header,
	// walked from the right to the first hop that is not a trusted proxy.
	// Empty: forwarding headers are ignored.
	TrustedProxies []netip.Prefix

	// ClientAddrHeader names the one forwarding header the trusted proxies
	// set: "X-Forwarded-For" (the default), "Forwarded" (RFC 7239) or
	// "X-Real-IP". The others are ignored, since a proxy may pass them on
	// from the client untouched.
	ClientAddrHeader string

	// MaxConnections caps the connections served at once; requests over it
	// get 503 with Retry-After before any upgrade. Zero means no cap.
	MaxConnections int

	// MaxConnectionsPerAddr caps the connections served at once for one
	// client address (after the TrustedProxies rules; for IPv6, one /64
	// network), so that one client cannot take every slot. Requests over it
	// get 429 with Retry-After before any upgrade. Zero means no cap: a
	// library cannot guess how many browsers share one address behind a NAT.
	MaxConnectionsPerAddr int

	// MaxFrameSize is the largest frame payload accepted from a client, in
	// bytes; a longer frame closes the connection with 1009. Zero means no
	// limit: frames are streamed, never buffered whole, so their size does
	// not bound memory.
	MaxFrameSize int64

	// WriteFrameSize splits a Stream.Write larger than it into frames of at
	// most this many bytes. Zero sends each Write as one frame.
	WriteFrameSize int

	// Compression, when set, turns on permessage-deflate (RFC 7692) for the
	// clients that offer it (browsers and Node's ws do): see
	// CompressionOptions. Nil: every connection is served uncompressed.
	Compression *CompressionOptions

	// ReadBufferSize is the size of the pooled buffer a connection reads
	// frame headers and small payloads into while data flows (at least 256).
	// An idle connection holds none. Zero means DefaultReadBufferSize.
	ReadBufferSize int

	// PingInterval is how long a connection may go without traffic in
	// either direction before the handler sends a WebSocket ping, so that
	// proxies (nginx drops connections idle for 60 s by default) and NATs
	// keep it open. Payload bytes count as traffic as they arrive, so a large
	// frame sent slowly is alive. Zero means DefaultPingInterval; a negative
	// value sends no pings.
	PingInterval time.Duration

	// PongTimeout is how long a connection that was pinged while the client
	// had sent nothing may stay silent before it is dropped as dead (a peer
	// gone behind a NAT never says so): a silent client is dropped
	// PingInterval + PongTimeout after its last byte. Zero means
	// DefaultPongTimeout; a negative value never drops.
	PongTimeout time.Duration

	// WriteTimeout bounds each Write (all its frames) and each control
	// frame: a write gets at least half of it, at most all, so that a client
	// that stops reading cannot hold the backend's writer forever; past it
	// the write fails and the stream closes. A deadline set on the stream
	// applies too, whichever comes first. Zero means DefaultWriteTimeout; a
	// negative value sets none.
	WriteTimeout time.Duration

	// FirstDataTimeout bounds the time from the upgrade to the client's first
	// MQTT byte (an empty frame does not count); past it the connection
	// closes with 1008. Zero means DefaultFirstDataTimeout; a negative value
	// sets none. A backend may bound more (backend.Dialer and backend/mochi
	// want a whole MQTT CONNECT in time).
	FirstDataTimeout time.Duration

	// CloseTimeout bounds each step of a close: sending the close frame, and
	// waiting for the client's reply before the TCP connection is closed.
	// Zero means DefaultCloseTimeout.
	CloseTimeout time.Duration

	// Logger receives one line per ended connection (info level: remote
	// address, duration, bytes and frames each way, close codes and
	// reasons), refused requests (info level, with the reason; at most
	// refusalLogBurst lines per refusalLogWindow, then a count of those left
	// out), and backend panics (error level). Nil means slog.Default().
	Logger *slog.Logger

	pool       bufferPool
	refusalLog rateLimiter

	clock        tickClock                      // the streams' keepalive ticks
	settings     atomic.Pointer[streamSettings] // the streams' shared settings
	mu           sync.Mutex
	streams      map[*Stream]struct{}
	admitting    int                  // requests admitted but not yet tracked
	perAddr      map[netip.Prefix]int // admitted and tracked, by client address
	shuttingDown bool
	active       sync.WaitGroup
	stats        totals
}

// ServeHTTP upgrades the request to a WebSocket and serves it; see Handler.
// An HTTP/1.1 upgrade is hijacked and served in a goroutine of its own; an
// HTTP/2 extended CONNECT (RFC 8441) is served on its stream, and ServeHTTP
// returns when it ends. Requests that are not WebSocket handshakes, or that
// the handler's policy refuses, get a plain-text HTTP error.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	peer := requestPeer(r)
	remote := clientAddr(peer, r.Header, h.TrustedProxies, h.ClientAddrHeader)
	addrKey := clientKey(remote)
	subprotocol, parent, refusal := h.check(w, r)
	if refusal == nil {
		refusal = h.admit(addrKey)
	}
	if refusal != nil {
		h.refuse(w, r, remote, refusal)
		return
	}
	admitted := true
	defer func() {
		if admitted {
			h.unadmit(addrKey)
		}
	}()

	var deflate *deflateConfig
	var extensions string // the Sec-WebSocket-Extensions answer
	if h.Compression != nil {
		cfg := h.Compression.config(h.WriteFrameSize)
		var takeover bool
		if extensions, takeover = negotiateDeflate(r.Header, cfg.history > 0); extensions != "" {
			if !takeover {
				cfg.history = 0
			}
			deflate = &cfg
		}
	}

	var conn net.Conn
	var src io.Reader
	if r.ProtoMajor == 2 {
		conn = acceptExtendedConnect(w, r, subprotocol, extensions)
		if conn == nil { // the client reset the stream before the 200 went out
			h.countRefusal("upgrade_failed")
			return
		}
		src = conn
	} else {
		conn, src = h.upgrade(w, r, subprotocol, extensions, remote)
	}
	if conn == nil {
		return
	}

	if ta, ok := conn.RemoteAddr().(*net.TCPAddr); ok && remote == peer && sameAddr(ta, peer) {
		// The client is the TCP peer: the stream reports the address the
		// connection holds already, and keeps no copy of it. (Only a
		// *net.TCPAddr: a listener's own address type would count the
		// client in another network for MaxConnectionsPerAddr, and give a
		// PROXY protocol header no address.)
		remote = nil
	}
	ctx, cancel := newStreamContext(parent)
	s := newStream(conn, src, streamConfig{
		pool:             h.bufferPool(),
		subprotocol:      subprotocol,
		httpVersion:      uint8(min(r.ProtoMajor, 15)<<4 | min(r.ProtoMinor, 15)),
		remoteAddr:       remote,
		maxFrameSize:     h.MaxFrameSize,
		deflate:          deflate,
		firstDataTimeout: orDefault(h.FirstDataTimeout, DefaultFirstDataTimeout),
		cancel:           cancel,
		settings:         h.streamSettings(),
	})
	admitted = false
	if !h.track(s) {
		// Shutdown began during the upgrade: say so, and read up to the
		// client's close reply so that the connection closes with it, not
		// CloseTimeout later.
		_ = s.CloseWith(CloseGoingAway, "server shutting down")
		if r.ProtoMajor == 2 {
			s.closeConn() // nothing may write once ServeHTTP returns
			return
		}
		go s.drain()
		return
	}
	if r.ProtoMajor == 2 {
		// The HTTP/2 stream lives as long as ServeHTTP runs. A client that
		// resets it cancels the request's context.
		stop := context.AfterFunc(r.Context(), func() { s.drop("the client reset the HTTP/2 stream") })
		defer stop()
		h.serve(ctx, s)
		return
	}
	// The stream runs in its own goroutine so that net/http's per-request
	// state (buffers, request, response) is freed once ServeHTTP returns.
	s.handler = h
	go h.serve(ctx, s)
}

// upgrade hijacks an HTTP/1.1 request's connection and answers 101, with
// the Sec-WebSocket-Extensions answer extensions unless it is empty. It
// returns the connection and the reader of the client's bytes (which starts
// with any net/http had buffered), or nil when the upgrade failed.
func (h *Handler) upgrade(w http.ResponseWriter, r *http.Request, subprotocol, extensions string, remote net.Addr) (net.Conn, io.Reader) {
	var upgrader ws.HTTPUpgrader
	if subprotocol != "" {
		upgrader.Protocol = func(p string) bool { return p == subprotocol }
	}
	if extensions != "" {
		upgrader.Header = http.Header{"Sec-Websocket-Extensions": {extensions}}
	}
	conn, rw, _, err := upgrader.Upgrade(canonicalUpgrade(r, subprotocol), w)
	if err != nil {
		if conn != nil {
			_ = conn.Close()
		}
		h.countRefusal("upgrade_failed")
		h.logger().Warn("mqttws: upgrade failed", "remote", remote.String(), "err", err)
		return nil, nil
	}
	// net/http's read and write deadlines (http.Server's ReadTimeout,
	// WriteTimeout) must not reach the WebSocket connection. gobwas/ws
	// clears them too; this does not depend on it.
	_ = conn.SetDeadline(time.Time{})
	// Bytes the client sent right after its request may already sit in
	// net/http's reader; keep them and drop its 8 KiB of buffers.
	if n := rw.Reader.Buffered(); n > 0 {
		early, _ := rw.Reader.Peek(n)
		return conn, &prefixedReader{prefix: bytes.Clone(early), src: conn}
	}
	return conn, conn
}

// check applies the handshake rules and the handler's policy. It returns the
// chosen subprotocol and the context the backend's context derives from.
func (h *Handler) check(w http.ResponseWriter, r *http.Request) (string, context.Context, *handshakeError) {
	prefs := h.Subprotocols
	if prefs == nil {
		prefs = DefaultSubprotocols()
	}
	var subprotocol string
	var refusal *handshakeError
	if r.ProtoMajor == 2 {
		subprotocol, refusal = checkExtendedConnect(r, prefs, h.AllowNoSubprotocol)
	} else {
		subprotocol, refusal = checkHandshake(r, prefs, h.AllowNoSubprotocol)
	}
	if refusal != nil {
		return "", nil, refusal
	}
	if refusal := checkHost(r, h.AllowedHosts); refusal != nil {
		return "", nil, refusal
	}
	if refusal := checkOrigin(r, h.AllowedOrigins); refusal != nil {
		return "", nil, refusal
	}
	switch {
	case h.Backend == nil:
		return "", nil, refuseAs("no_backend", http.StatusInternalServerError, "no Backend configured")
	case h.Compression != nil && !validCompressionLevel(h.Compression.Level):
		return "", nil, refuseAs("bad_compression_level", http.StatusInternalServerError, "Handler.Compression.Level %d is not a compression level: want 1 (BestSpeed) to 9 (BestCompression), -1 (DefaultCompression), -2 (HuffmanOnly), or 0 for DefaultCompressionLevel", h.Compression.Level)
	case h.Compression != nil && h.Compression.History > MaxCompressionHistory:
		return "", nil, refuseAs("bad_compression_history", http.StatusInternalServerError, "Handler.Compression.History %d is over deflate's window: want 0 to %d (MaxCompressionHistory)", h.Compression.History, MaxCompressionHistory)
	case r.ProtoMajor != 2 && !canHijack(w):
		return "", nil, refuseAs("cannot_hijack", http.StatusInternalServerError, "the http.ResponseWriter cannot hijack the connection (a middleware that hides Hijack and Unwrap?)")
	}
	parent := r.Context()
	if h.Authorize != nil {
		ctx, err := h.Authorize(r)
		if err != nil {
			return "", nil, authorizationRefusal(err)
		}
		if ctx != nil {
			parent = ctx
		}
	}
	return subprotocol, parent, nil
}

// serve runs the backend on s and closes s after it, unless the backend
// detached the stream (see park.Stream), which then calls finish.
func (h *Handler) serve(ctx context.Context, s *Stream) {
	err := h.runBackend(ctx, s)
	if errors.Is(err, park.ErrDetached) && s.detached.Load() {
		if sc, ok := ctx.(*streamContext); ok {
			sc.dropValues()
		}
		return
	}
	h.finish(s, err)
}

// finish closes s once its backend returned err, reads up to the client's
// close reply, and logs the connection's end.
func (h *Handler) finish(s *Stream, err error) {
	defer h.untrack(s)
	code, reason := closeCodeOf(err)
	_ = s.CloseWith(code, reason)
	// The backend reads no more: read up to the client's close reply here,
	// so that the connection closes as soon as it comes.
	s.drain()
	s.waitClosed()
	h.logEnd(s, err)
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

// streamSettings returns the settings a new stream keeps, shared with the
// streams before it unless the Handler's fields changed since.
func (h *Handler) streamSettings() *streamSettings {
	want := streamSettings{
		writeFrameSize: h.WriteFrameSize,
		writeTimeout:   orDefault(h.WriteTimeout, DefaultWriteTimeout),
		closeTimeout:   orDefault(h.CloseTimeout, DefaultCloseTimeout),
		pingInterval:   orDefault(h.PingInterval, DefaultPingInterval),
		pongTimeout:    orDefault(h.PongTimeout, DefaultPongTimeout),
		clock:          &h.clock,
	}
	if p := h.settings.Load(); p != nil && *p == want {
		return p
	}
	p := &want
	h.settings.Store(p)
	return p
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
