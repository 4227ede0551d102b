package backend_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/backend"
	"github.com/mqttws/mqttws/internal/testbroker"
)

// stuckBroker is a broker stand-in that answers the CONNECT and then
// never reads again, as a broker process that hangs (SIGSTOP, a deadlock)
// while its sockets stay open. It returns its address.
func stuckBroker(t *testing.T) string {
	t.Helper()
	return serveOneConn(t, func(c net.Conn, done <-chan struct{}) {
		connect := testbroker.ConnectPacket(testbroker.ClientID("stuck"), 60)
		if _, err := io.ReadFull(c, make([]byte, len(connect))); err != nil {
			return
		}
		if _, err := c.Write(testbroker.ConnackAccepted); err != nil {
			return
		}
		<-done
	})
}

// A client that goes away while the relay is blocked writing to a broker
// that stopped reading must not leave the relay behind until the kernel
// gives up on the broker: once the stream ends (here its keepalive finds
// the client gone), the write to the broker gets brokerLinger (5 s), and
// the relay ends, parked or not. Not parallel: it counts every relay
// goroutine of the process.
func TestRelayEndsWhenTheClientLeavesAStuckBroker(t *testing.T) {
	for _, tc := range []struct {
		name string
		wrap bool // a wrapping Backend keeps the relay from parking
	}{{"parked", false}, {"goroutines", true}} {
		t.Run(tc.name, func(t *testing.T) {
			d := logged(t, &backend.Dialer{Addresses: []string{stuckBroker(t)}})
			var b mqttws.Backend = d
			if tc.wrap {
				b = mqttws.BackendFunc(func(ctx context.Context, c net.Conn) error { return d.ServeStream(ctx, c) })
			}
			var log syncBuffer
			srv := testbroker.Serve(t, &mqttws.Handler{
				Backend:      b,
				PingInterval: 200 * time.Millisecond,
				PongTimeout:  200 * time.Millisecond,
				Logger:       slog.New(slog.NewTextHandler(&log, nil)),
			})
			c := testbroker.DialWS(t, srv.URL)
			if err := c.WriteFrame(ws.NewBinaryFrame(testbroker.ConnectPacket(testbroker.ClientID("stuck"), 60))); err != nil {
				t.Fatal(err)
			}
			c.ExpectData(t, testbroker.ConnackAccepted)

			// Publish until the broker's socket, the relay's and the
			// client's own are full: the relay then waits in a write to
			// the broker, and the client's writes stall.
			publish := ws.NewBinaryFrame(testbroker.PublishPacket("t", make([]byte, 60<<10)))
			sent := 0
			for sent < 64<<20 {
				_ = c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
				if err := c.WriteFrame(publish); err != nil {
					break
				}
				sent += len(publish.Payload)
			}
			if sent >= 64<<20 {
				t.Fatalf("sent %d bytes to a broker that does not read without stalling", sent)
			}
			_ = c.Conn.Close() // the client goes away without a word

			// Keepalive: 0.2 s to a ping that cannot be sent or answered,
			// 0.2 s for its pong; then brokerLinger.
			srv.WaitActiveStreams(0, 10*time.Second)
			expectRelayGoroutines(t, 0)
			if !strings.Contains(log.String(), "stopped reading") {
				t.Fatalf("the connection's log line does not say the broker stopped reading:\n%s", log.String())
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes, for a log.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
