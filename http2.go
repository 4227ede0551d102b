package mqttws

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// WebSocket over HTTP/2 (RFC 8441): the client opens a stream with an
// extended CONNECT (":protocol: websocket"), the server answers 200, and the
// stream's DATA carries the same WebSocket frames as an upgraded TCP
// connection. The only difference is the transport: an h2Conn stands where
// the hijacked connection stands for HTTP/1.1, and everything above it (the
// frame layer, the Stream, the backend) is the same.
//
// Go's HTTP/2 server passes extended CONNECT requests to handlers only when
// it advertises SETTINGS_ENABLE_CONNECT_PROTOCOL: in Go 1.26 with the
// environment variable GODEBUG=http2xconnect=1, from Go 1.27 with
// http.HTTP2Config.EnableConnectProtocol.

// checkExtendedConnect validates an HTTP/2 WebSocket handshake (RFC 8441
// section 5) and picks the subprotocol.
func checkExtendedConnect(r *http.Request, prefs []string, allowNone bool) (string, *handshakeError) {
	protocol := r.Header.Get(":protocol")
	switch {
	case r.Method == http.MethodConnect && protocol == "":
		e := refuseAs("method", http.StatusMethodNotAllowed, "CONNECT tunnels are not served here: this endpoint takes WebSocket requests (extended CONNECT with :protocol websocket)")
		e.header = http.Header{"Allow": {"GET, CONNECT"}}
		return "", e
	case r.Method == http.MethodConnect && !strings.EqualFold(protocol, "websocket"):
		return "", refuseAs("bad_handshake", http.StatusBadRequest, "extended CONNECT for protocol %q: this endpoint speaks MQTT over WebSocket (:protocol websocket)", protocol)
	case r.Method != http.MethodConnect:
		return "", refuseAs("not_websocket", http.StatusBadRequest, "this endpoint speaks MQTT over WebSocket: over HTTP/2, open it with an extended CONNECT (RFC 8441) offering subprotocol %s", quoteList(prefs))
	}
	if refusal := checkVersion(r, http.StatusBadRequest); refusal != nil {
		return "", refusal
	}
	return selectSubprotocol(offeredSubprotocols(r.Header), prefs, allowNone)
}

// acceptExtendedConnect answers 200 to an HTTP/2 WebSocket handshake, with
// the Sec-WebSocket-Extensions answer extensions unless it is empty, and
// returns the stream as a net.Conn, or nil when the answer could not be
// sent (the client is gone).
func acceptExtendedConnect(w http.ResponseWriter, r *http.Request, subprotocol, extensions string) net.Conn {
	if subprotocol != "" {
		w.Header().Set("Sec-WebSocket-Protocol", subprotocol)
	}
	if extensions != "" {
		w.Header().Set("Sec-WebSocket-Extensions", extensions)
	}
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if err := rc.Flush(); err != nil {
		return nil
	}
	// The server's ReadTimeout and WriteTimeout are per request: they must
	// not end the WebSocket.
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	return &h2Conn{w: w, body: r.Body, rc: rc, local: local, remote: requestPeer(r)}
}

// h2Conn is an HTTP/2 stream as a net.Conn: it reads the request body and
// writes the response, flushing after each write, with deadlines through
// http.ResponseController. An expired read deadline ends reading for good
// (Go's HTTP/2 server closes the body), unlike on TCP; an expired write
// deadline resets the stream.
//
// Nothing may touch the response writer once the handler returns: every
// use holds alive for reading and checks closed, and Close, which the
// handler waits for, takes alive for writing.
type h2Conn struct {
	w      http.ResponseWriter
	body   io.ReadCloser
	rc     *http.ResponseController
	local  net.Addr
	remote net.Addr

	alive   sync.RWMutex
	closed  atomic.Bool
	writing atomic.Int32 // writes under way or about to start
	wmu     sync.Mutex   // one write at a time
}

func (c *h2Conn) Read(p []byte) (int, error) {
	n, err := c.body.Read(p)
	if err != nil && c.closed.Load() {
		err = net.ErrClosed
	}
	return n, err
}

func (c *h2Conn) Write(p []byte) (int, error) {
	var n int
	err := c.write(func() error {
		var err error
		n, err = c.w.Write(p)
		return err
	})
	return n, err
}

// writeBuffers writes a frame's header and payload and flushes once, so
// that they leave in one DATA frame when flow control allows.
func (c *h2Conn) writeBuffers(bufs *net.Buffers) (int64, error) {
	var total int64
	err := c.write(func() error {
		for _, b := range *bufs {
			n, err := c.w.Write(b)
			total += int64(n)
			if err != nil {
				return err
			}
		}
		*bufs = (*bufs)[len(*bufs):]
		return nil
	})
	return total, err
}

// write runs fn, which writes to the response, and flushes.
func (c *h2Conn) write(fn func() error) error {
	// writing is raised before closed is read, and Close sets closed before
	// it reads writing: either this write sees closed, or Close sees the
	// write and ends it.
	c.writing.Add(1)
	defer c.writing.Add(-1)
	c.alive.RLock()
	defer c.alive.RUnlock()
	if c.closed.Load() {
		return net.ErrClosed
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	err := fn()
	if err == nil {
		err = c.rc.Flush()
	}
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && c.closed.Load() {
		err = net.ErrClosed
	}
	return err
}

// Close ends the stream: it unblocks a read and a write under way, and
// returns once no call touches the response writer any more.
func (c *h2Conn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	_ = c.body.Close()
	if c.writing.Load() > 0 {
		// A write is under way, maybe stuck on flow control: a deadline in
		// the past ends it (and resets the stream, which is ending anyway).
		c.alive.RLock()
		_ = c.rc.SetWriteDeadline(time.Now())
		c.alive.RUnlock()
	}
	c.alive.Lock()
	defer c.alive.Unlock()
	return nil
}

func (c *h2Conn) LocalAddr() net.Addr  { return c.local }
func (c *h2Conn) RemoteAddr() net.Addr { return c.remote }

func (c *h2Conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *h2Conn) SetReadDeadline(t time.Time) error {
	return c.control(func() error { return c.rc.SetReadDeadline(t) })
}

func (c *h2Conn) SetWriteDeadline(t time.Time) error {
	return c.control(func() error { return c.rc.SetWriteDeadline(t) })
}

// control runs fn on the response controller unless the stream is closed.
func (c *h2Conn) control(fn func() error) error {
	c.alive.RLock()
	defer c.alive.RUnlock()
	if c.closed.Load() {
		return net.ErrClosed
	}
	return fn()
}
