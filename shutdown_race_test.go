package mqttws_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mqttws/mqttws"
)

// hookWriter runs beforeWrite once, just before the first write on the
// hijacked connection (the 101 answer).
type hookWriter struct {
	http.ResponseWriter
	beforeWrite func()
}

func (w hookWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	hc := &hookConn{Conn: c, hook: w.beforeWrite}
	rw.Writer.Reset(hc)
	return hc, rw, nil
}

type hookConn struct {
	net.Conn
	hook func()
}

func (c *hookConn) Write(p []byte) (int, error) {
	if c.hook != nil {
		h := c.hook
		c.hook = nil
		h()
	}
	return c.Conn.Write(p)
}

// TestUpgradeDuringShutdownClosesWithTheClientsReply: a connection upgraded
// while Shutdown begins gets 1001, and closes as soon as the client answers,
// not CloseTimeout later.
func TestUpgradeDuringShutdownClosesWithTheClientsReply(t *testing.T) {
	t.Parallel()
	const closeTimeout = 3 * time.Second
	h := &mqttws.Handler{Backend: newRecorder(), CloseTimeout: closeTimeout, Logger: discardLogger()}
	shutdownDone := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(hookWriter{w, func() {
			go func() { shutdownDone <- h.Shutdown(context.Background()) }()
			time.Sleep(100 * time.Millisecond) // Shutdown has begun
		}}, r)
	}))
	defer srv.Close()
	c := dial(t, "ws"+strings.TrimPrefix(srv.URL, "http")+"/mqtt")
	if err := <-shutdownDone; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	hdr, p, err := c.readFrame()
	if err != nil || hdr.OpCode != ws.OpClose {
		t.Fatalf("got %v %v, want a close frame", hdr.OpCode, err)
	}
	if code, _ := ws.ParseCloseFrameData(p); mqttws.CloseCode(code) != mqttws.CloseGoingAway {
		t.Fatalf("close code %d, want 1001", code)
	}
	start := time.Now()
	c.send(frame{op: ws.OpClose, payload: p})
	c.expectEOF()
	if d := time.Since(start); d > closeTimeout/2 {
		t.Fatalf("TCP closed %v after the client's close reply: nobody read it", d)
	}
}
