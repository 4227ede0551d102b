package mqttws_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/internal/testbroker"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 10 * time.Second

// serve runs h on a real loopback server and shuts both down at cleanup.
func serve(t *testing.T, h *mqttws.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("Handler.Shutdown: %v", err)
		}
	})
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/mqtt"
}

// echo is a backend that sends back what it reads.
func echo(_ context.Context, c net.Conn) error {
	_, err := io.Copy(c, c)
	return err
}

// recorder is a backend that keeps what it reads until the stream ends.
type recorder struct {
	mu   sync.Mutex
	data bytes.Buffer
	err  error
	done chan struct{}
}

func newRecorder() *recorder { return &recorder{done: make(chan struct{})} }

func (r *recorder) ServeStream(_ context.Context, c net.Conn) error {
	defer close(r.done)
	buf := make([]byte, 1000)
	for {
		n, err := c.Read(buf)
		r.mu.Lock()
		r.data.Write(buf[:n])
		r.mu.Unlock()
		if err != nil {
			r.mu.Lock()
			r.err = err
			r.mu.Unlock()
			return nil
		}
	}
}

// wait returns what the backend read and the error that ended its reading.
func (r *recorder) wait(t *testing.T) ([]byte, error) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(testTimeout):
		t.Fatal("backend still reading")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.data.Bytes()), r.err
}

// client is a raw WebSocket client that writes whatever frames a test asks
// for, valid or not.
type client struct {
	t    *testing.T
	conn net.Conn
	r    io.Reader
	// window, when set, makes readMessage inflate with context takeover:
	// it holds the end of the messages inflated so far.
	window *[]byte
}

func dial(t *testing.T, url string, protocols ...string) *client {
	t.Helper()
	if protocols == nil {
		protocols = []string{"mqtt"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	d := ws.Dialer{Protocols: protocols}
	conn, br, _, err := d.Dial(ctx, url)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := &client{t: t, conn: conn, r: conn}
	if br != nil {
		c.r = io.MultiReader(br, conn)
	}
	return c
}

// frame encodes one client frame, masked unless unmasked is set.
type frame struct {
	op       ws.OpCode
	notFinal bool
	rsv      byte
	payload  []byte
	unmasked bool
}

func (f frame) bytes() []byte {
	return testbroker.Frame{Op: f.op, NotFinal: f.notFinal, Rsv: f.rsv, Payload: f.payload, Unmasked: f.unmasked}.Bytes()
}

func binaryFrame(p []byte) frame { return frame{op: ws.OpBinary, payload: p} }

func closeBody(code uint16, reason string) []byte { return testbroker.CloseBody(code, reason) }

func (c *client) send(frames ...frame) {
	c.t.Helper()
	var b []byte
	for _, f := range frames {
		b = append(b, f.bytes()...)
	}
	c.sendRaw(b)
}

func (c *client) sendRaw(b []byte) {
	c.t.Helper()
	_ = c.conn.SetWriteDeadline(time.Now().Add(testTimeout))
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("client write: %v", err)
	}
}

// readFrame reads one server frame, checking that it is valid for a client
// to receive.
func (c *client) readFrame() (ws.Header, []byte, error) {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(testTimeout))
	h, err := ws.ReadHeader(c.r)
	if err != nil {
		return h, nil, err
	}
	if err := ws.CheckHeader(h, ws.StateClientSide); err != nil {
		c.t.Fatalf("server sent an invalid frame header %+v: %v", h, err)
	}
	if h.Length > 1<<30 {
		c.t.Fatalf("server frame of %d bytes", h.Length)
	}
	p := make([]byte, h.Length)
	_, err = io.ReadFull(c.r, p)
	return h, p, err
}

// readData reads n bytes of binary frame payload, failing on anything else
// but pings.
func (c *client) readData(n int) []byte {
	c.t.Helper()
	var got []byte
	for len(got) < n {
		h, p, err := c.readFrame()
		if err != nil {
			c.t.Fatalf("read data after %d of %d bytes: %v", len(got), n, err)
		}
		switch h.OpCode {
		case ws.OpBinary:
			got = append(got, p...)
		case ws.OpPing:
		default:
			c.t.Fatalf("got %v frame %q while reading data", h.OpCode, p)
		}
	}
	return got
}

// expectClose reads up to the server's close frame, checks its code, answers
// it, and checks that the server then closes the TCP connection.
func (c *client) expectClose(code mqttws.CloseCode) string {
	c.t.Helper()
	for {
		h, p, err := c.readFrame()
		if err != nil {
			c.t.Fatalf("waiting for close %d: %v", code, err)
		}
		if h.OpCode != ws.OpClose {
			continue
		}
		got, reason := ws.ParseCloseFrameData(p)
		if mqttws.CloseCode(got) != code {
			c.t.Fatalf("close code %d (%q), want %d", got, reason, code)
		}
		// Answer as a client does; the server may have closed TCP already.
		_, _ = c.conn.Write(frame{op: ws.OpClose, payload: p}.bytes())
		c.expectEOF()
		return reason
	}
}

// expectEOF checks that the server closed the TCP connection.
func (c *client) expectEOF() {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(testTimeout))
	var b [1]byte
	n, err := c.r.Read(b[:])
	if n > 0 || (err != nil && !errors.Is(err, io.EOF) && !isReset(err)) {
		c.t.Fatalf("want the server to close TCP, got %d bytes, err %v", n, err)
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

func asCloseError(err error, target **mqttws.CloseError) bool { return errors.As(err, target) }

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
