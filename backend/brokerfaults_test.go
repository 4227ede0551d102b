//go:build linux

package backend_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/backend"
	"github.com/mqttws/mqttws/internal/testbroker"
)

// relayModes are the two ways a relay runs: parked between bursts when the
// Dialer is the Handler's Backend, in goroutines when a Backend wraps it.
var relayModes = []struct {
	name string
	wrap bool
}{{"parked", false}, {"goroutines", true}}

// backendOf returns d as the Handler's Backend, or wrapped in another.
func backendOf(d *backend.Dialer, wrap bool) mqttws.Backend {
	if !wrap {
		return d
	}
	return mqttws.BackendFunc(func(ctx context.Context, c net.Conn) error { return d.ServeStream(ctx, c) })
}

// connectThrough upgrades to srv and connects as clientID, which the
// broker stand-in must expect.
func connectThrough(t *testing.T, srv *testbroker.Server, clientID string) *testbroker.WSClient {
	t.Helper()
	c := testbroker.DialWS(t, srv.URL)
	if err := c.WriteFrame(ws.NewBinaryFrame(testbroker.ConnectPacket(clientID, 60))); err != nil {
		t.Fatal(err)
	}
	c.ExpectData(t, testbroker.ConnackAccepted)
	return c
}

// answerConnect reads the CONNECT of clientID from a broker stand-in's
// connection and accepts it.
func answerConnect(c net.Conn, clientID string) bool {
	connect := testbroker.ConnectPacket(clientID, 60)
	if _, err := io.ReadFull(c, make([]byte, len(connect))); err != nil {
		return false
	}
	_, err := c.Write(testbroker.ConnackAccepted)
	return err == nil
}

// A broker that crashes while the client publishes (its listener and the
// connection closed) is a broker gone away: 1012, over TCP and unix
// sockets, whichever side of the relay meets the end first. The client's
// side, whose write fails, used to close the broker connection and have
// the end taken for the client's (1000) in some of the runs.
func TestBrokerCrashWhileTheClientPublishesCloses1012(t *testing.T) {
	const clientID, runs = "crash-client", 10
	for _, network := range []string{"tcp4", "unix"} {
		for _, mode := range relayModes {
			t.Run(network+"/"+mode.name, func(t *testing.T) {
				codes := map[mqttws.CloseCode]int{}
				for range runs {
					addr := "127.0.0.1:0"
					if network == "unix" {
						addr = filepath.Join(t.TempDir(), "broker.sock")
					}
					ln, err := net.Listen(network, addr)
					if err != nil {
						t.Fatal(err)
					}
					addr = serveOneConnOn(t, ln, func(c net.Conn, _ <-chan struct{}) {
						if answerConnect(c, clientID) {
							_, _ = io.ReadFull(c, make([]byte, 200<<10))
						}
						_ = ln.Close() // the crash: no new connection either
					})
					d := logged(t, &backend.Dialer{Network: network, Addresses: []string{addr}})
					srv := testbroker.Serve(t, &mqttws.Handler{Backend: backendOf(d, mode.wrap)})
					c := connectThrough(t, srv, clientID)
					stop := make(chan struct{})
					done := make(chan struct{})
					go func() {
						defer close(done)
						publish := ws.NewBinaryFrame(testbroker.PublishPacket("t", make([]byte, 1000)))
						for {
							select {
							case <-stop:
								return
							default:
							}
							_ = c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
							if c.WriteFrame(publish) != nil {
								return
							}
						}
					}()
					cf, err := c.ReadClose(10 * time.Second)
					close(stop)
					<-done
					if err != nil {
						t.Fatal(err)
					}
					codes[cf.Code]++
					srv.Close()
				}
				if codes[mqttws.CloseServiceRestart] != runs {
					t.Fatalf("close codes over %d crashes: %v, want 1012 every time", runs, codes)
				}
			})
		}
	}
}

// Once the stream's context ends (here by Shutdown, whose close the client
// answers only after 7 s, publishing meanwhile), each write to a healthy
// broker still gets brokerLinger (5 s) of its own: every byte reaches it,
// and the relay ends cleanly.
func TestWritesAfterTheStreamEndsStillReachAHealthyBroker(t *testing.T) {
	const clientID = "linger-client"
	for _, mode := range relayModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			read := make(chan int, 1)
			addr := serveOneConn(t, func(c net.Conn, _ <-chan struct{}) {
				if answerConnect(c, clientID) {
					n, _ := io.Copy(io.Discard, c)
					read <- int(n)
				}
			})
			d := logged(t, &backend.Dialer{Addresses: []string{addr}})
			result := make(chan error, 1)
			var b mqttws.Backend = d
			if mode.wrap {
				b = mqttws.BackendFunc(func(ctx context.Context, c net.Conn) error {
					err := d.ServeStream(ctx, c)
					result <- err
					return err
				})
			}
			srv := testbroker.Serve(t, &mqttws.Handler{Backend: b, CloseTimeout: 15 * time.Second})
			c := connectThrough(t, srv, clientID)

			go func() { _ = srv.Handler.Shutdown(context.Background()) }()
			if f, err := c.ReadFrame(5 * time.Second); err != nil || f.Header.OpCode != ws.OpClose {
				t.Fatalf("waiting for Shutdown's close: %v frame, %v", f.Header.OpCode, err)
			}
			publish := testbroker.PublishPacket("t", make([]byte, 100))
			sent := 0
			for start := time.Now(); time.Since(start) < 7*time.Second; {
				if err := c.WriteFrame(ws.NewBinaryFrame(publish)); err != nil {
					t.Fatal(err)
				}
				sent += len(publish)
				time.Sleep(250 * time.Millisecond)
			}
			if err := c.WriteFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))); err != nil {
				t.Fatal(err)
			}
			select {
			case got := <-read:
				if got != sent {
					t.Errorf("the broker read %d bytes of the %d sent after the close", got, sent)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the broker's connection did not end")
			}
			if mode.wrap {
				if err := <-result; err != nil {
					t.Errorf("the relay ended with %v", err)
				}
			}
		})
	}
}

// stuckClientID is the client id of the stuck broker's tests: one the
// broker knows the length of (testbroker.ClientID's grow with its count).
const stuckClientID = "stuck-client"

// stuckBroker is a broker stand-in that answers the CONNECT and then
// never reads again, as a broker process that hangs (SIGSTOP, a deadlock)
// while its sockets stay open. It returns its address.
func stuckBroker(t *testing.T) string {
	t.Helper()
	return serveOneConn(t, func(c net.Conn, done <-chan struct{}) {
		if answerConnect(c, stuckClientID) {
			<-done
		}
	})
}

// A client that goes away while the relay is blocked writing to a broker
// that stopped reading must not leave the relay behind until the kernel
// gives up on the broker: once the stream ends (here its keepalive finds
// the client gone), the write to the broker gets brokerLinger (5 s), and
// the relay ends, parked or not. Not parallel: it counts every relay
// goroutine of the process.
func TestRelayEndsWhenTheClientLeavesAStuckBroker(t *testing.T) {
	for _, mode := range relayModes {
		t.Run(mode.name, func(t *testing.T) {
			d := logged(t, &backend.Dialer{Addresses: []string{stuckBroker(t)}})
			var log testbroker.LockedBuffer
			srv := testbroker.Serve(t, &mqttws.Handler{
				Backend:      backendOf(d, mode.wrap),
				PingInterval: 200 * time.Millisecond,
				PongTimeout:  200 * time.Millisecond,
				Logger:       slog.New(slog.NewTextHandler(&log, nil)),
			})
			c := connectThrough(t, srv, stuckClientID)

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
