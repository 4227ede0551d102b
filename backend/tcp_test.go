package backend_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/backend"
	"github.com/mqttws/mqttws/internal/leakcheck"
	"github.com/mqttws/mqttws/internal/testbroker"
)

// TestMain fails the package if any goroutine outlives the tests: every
// test closes its clients, its HTTP server, its handler and its listeners.
// VerifyNone per test cannot work with parallel tests.
func TestMain(m *testing.M) {
	leakcheck.Main(m)
}

// serve serves a handler relaying to d.
func serve(t *testing.T, d *backend.Dialer) *testbroker.Server {
	t.Helper()
	return testbroker.Serve(t, &mqttws.Handler{Backend: logged(t, d)})
}

// logged has d log to the test's log, unless it logs elsewhere.
func logged(t *testing.T, d *backend.Dialer) *backend.Dialer {
	if d.Logger == nil {
		d.Logger = testbroker.Logger(t)
	}
	return d
}

func TestBrokerUnreachableClosesWith1013(t *testing.T) {
	t.Parallel()
	const dialTimeout = 500 * time.Millisecond
	tests := []struct {
		name string
		// dialer returns a Dialer for a broker that cannot be reached.
		dialer func(t *testing.T) *backend.Dialer
	}{
		{
			name: "tcp port closed",
			dialer: func(t *testing.T) *backend.Dialer {
				return &backend.Dialer{Addresses: []string{testbroker.ClosedAddr(t)}}
			},
		},
		{
			name: "unix socket missing",
			dialer: func(t *testing.T) *backend.Dialer {
				return &backend.Dialer{Network: "unix", Addresses: []string{filepath.Join(t.TempDir(), "missing.sock")}}
			},
		},
		{
			name: "tls handshake never answered",
			dialer: func(t *testing.T) *backend.Dialer {
				return &backend.Dialer{Addresses: []string{silentListener(t)}, TLSConfig: &tls.Config{}}
			},
		},
		{
			name: "tls certificate not trusted",
			dialer: func(t *testing.T) *backend.Dialer {
				cert := testbroker.SelfSignedCert(t)
				m := testbroker.Start(t, testbroker.Options{
					CertFile: cert.CertFile,
					KeyFile:  cert.KeyFile,
				})
				return &backend.Dialer{Addresses: []string{m.Addr}, TLSConfig: &tls.Config{}}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := tt.dialer(t)
			d.Timeout = dialTimeout
			srv := serve(t, d)
			start := time.Now()
			c := testbroker.DialWS(t, srv.URL)
			cf := c.ExpectClose(t, mqttws.CloseTryAgainLater, dialTimeout+2*time.Second)
			after := time.Since(start)
			t.Logf("close frame %d %q %v after the WebSocket dial began", cf.Code, cf.Reason, after)
			if after > dialTimeout+time.Second {
				t.Errorf("close frame came %v after the WebSocket dial began, want at most the dial timeout of %v (and a margin)", after, dialTimeout)
			}
			srv.WaitActiveStreams(0, 5*time.Second)
		})
	}
}

// silentListener returns the address of a TCP listener that accepts
// connections and never writes to them.
func silentListener(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		wg.Wait()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return l.Addr().String()
}

func TestBrokerClosingConnectionClosesWith1000(t *testing.T) {
	t.Parallel()
	srv := serve(t, backend.Dial(testbroker.StartMosquitto(t)))
	tests := []struct {
		name string
		// provoke makes the broker close the connection of the client with
		// id, whose CONNECT was accepted.
		provoke func(t *testing.T, c *testbroker.WSClient, id string)
	}{
		{
			name: "client sends DISCONNECT",
			provoke: func(t *testing.T, c *testbroker.WSClient, _ string) {
				if err := c.WriteFrame(ws.NewBinaryFrame(testbroker.Disconnect)); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "another connection takes the client id over",
			provoke: func(t *testing.T, _ *testbroker.WSClient, id string) {
				testbroker.ConnectRaw(t, srv.URL, id)
			},
		},
		{
			name: "client sends a packet of reserved type 0",
			provoke: func(t *testing.T, c *testbroker.WSClient, _ string) {
				if err := c.WriteFrame(ws.NewBinaryFrame([]byte{0x00, 0x00})); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := testbroker.ClientID("closed")
			c := testbroker.ConnectRaw(t, srv.URL, id)
			tt.provoke(t, c, id)
			cf := c.ExpectClose(t, mqttws.CloseNormal, 5*time.Second)
			if cf.DataBefore != 0 {
				t.Errorf("%d data bytes before the close frame, want none", cf.DataBefore)
			}
		})
	}
}

func TestBrokerRefusalArrivesBeforeClose1000(t *testing.T) {
	t.Parallel()
	srv := serve(t, backend.Dial(testbroker.StartMosquitto(t)))
	c := testbroker.DialWS(t, srv.URL)
	connect := testbroker.ConnectPacket(testbroker.ClientID("refused"), 60)
	connect[8] = 3 // protocol level 3 under the name "MQTT": refused
	if err := c.WriteFrame(ws.NewBinaryFrame(connect)); err != nil {
		t.Fatal(err)
	}
	c.ExpectData(t, []byte{0x20, 0x02, 0x00, 0x01}) // CONNACK: unacceptable protocol version
	c.ExpectClose(t, mqttws.CloseNormal, 5*time.Second)
}

func TestShutdownDuringDialClosesWith1001AtOnce(t *testing.T) {
	t.Parallel()
	srv := serve(t, &backend.Dialer{
		Addresses: []string{silentListener(t)},
		TLSConfig: &tls.Config{},
		Timeout:   time.Minute,
	})
	c := testbroker.DialWS(t, srv.URL)
	srv.WaitActiveStreams(1, 5*time.Second)

	if d := shutdownClosing(t, srv, c); d > 2*time.Second {
		t.Errorf("Shutdown took %v with a dial under way, want it to cancel the dial", d)
	}
}

func TestHandlerShutdownClosesWith1001AndEndsBrokerConnection(t *testing.T) {
	t.Parallel()
	srv := serve(t, backend.Dial(testbroker.StartMosquitto(t)))
	c := testbroker.ConnectRaw(t, srv.URL, testbroker.ClientID("shutdown"))

	// A broker that closes once its connection is half-closed lets Shutdown
	// return at once, without waiting out the relay's linger.
	if d := shutdownClosing(t, srv, c); d > 2*time.Second {
		t.Errorf("Shutdown took %v, want well under the 5s linger", d)
	}
}

// shutdownClosing shuts srv down, checks that c gets 1001, and returns how
// long the shutdown took; it fails the test past 10s.
func shutdownClosing(t *testing.T, srv *testbroker.Server, c *testbroker.WSClient) time.Duration {
	t.Helper()
	start := time.Now()
	done := make(chan struct{})
	go func() {
		srv.Close()
		close(done)
	}()
	c.ExpectClose(t, mqttws.CloseGoingAway, 5*time.Second)
	select {
	case <-done:
		return time.Since(start)
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return within 10s")
		return 0
	}
}

func TestDialFailureSaysOnceWhatFailed(t *testing.T) {
	t.Parallel()
	refusedA, refusedB := testbroker.ClosedAddr(t), testbroker.ClosedAddr(t)
	missing := filepath.Join(t.TempDir(), "missing.sock")
	silent := silentListener(t)
	tests := []struct {
		name   string
		dialer *backend.Dialer
		want   string // the cause behind the 1013
		is     error  // matched by errors.Is, when not nil
	}{
		{
			name:   "one node refusing",
			dialer: &backend.Dialer{Addresses: []string{refusedA}},
			want:   "backend: dial tcp " + refusedA + ": connect: connection refused",
			is:     syscall.ECONNREFUSED,
		},
		{
			name:   "two nodes refusing",
			dialer: &backend.Dialer{Addresses: []string{refusedA, refusedB}},
			want: "backend: none of 2 broker nodes answered: dial tcp " + refusedA + ": connect: connection refused; " +
				"dial tcp " + refusedB + ": connect: connection refused",
			is: syscall.ECONNREFUSED,
		},
		{
			name:   "unix socket missing",
			dialer: &backend.Dialer{Network: "unix", Addresses: []string{missing}},
			want:   "backend: dial unix " + missing + ": connect: no such file or directory",
			is:     syscall.ENOENT,
		},
		{
			name:   "TLS handshake never answered",
			dialer: &backend.Dialer{Addresses: []string{silent}, TLSConfig: &tls.Config{}, Timeout: 200 * time.Millisecond},
			want:   "backend: TLS handshake with tcp " + silent + ": no answer within 200ms",
			is:     context.DeadlineExceeded,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			client, stream := net.Pipe()
			defer client.Close()
			defer stream.Close()
			err := logged(t, tt.dialer).ServeStream(t.Context(), stream)
			var ce *mqttws.CloseError
			if !errors.As(err, &ce) || ce.Code != mqttws.CloseTryAgainLater || ce.Err == nil {
				t.Fatalf("ServeStream returned %v, want a CloseError with %d and a cause", err, mqttws.CloseTryAgainLater)
			}
			if got := ce.Err.Error(); got != tt.want {
				t.Errorf("cause\n%q, want\n%q", got, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("ServeStream returned %v, which does not match %v", err, tt.is)
			}
		})
	}
}

// serveRecording serves a handler relaying to d and returns what each
// ServeStream returned.
func serveRecording(t *testing.T, d *backend.Dialer) (*testbroker.Server, <-chan error) {
	t.Helper()
	served := make(chan error, 10)
	logged(t, d)
	srv := testbroker.Serve(t, &mqttws.Handler{
		Backend: mqttws.BackendFunc(func(ctx context.Context, conn net.Conn) error {
			err := d.ServeStream(ctx, conn)
			served <- err
			return err
		}),
	})
	return srv, served
}

func TestClientOrBrokerEndingNormallyIsNoBackendError(t *testing.T) {
	t.Parallel()
	broker := testbroker.StartMosquitto(t)
	tests := append(testbroker.Departures(), []testbroker.Departure{
		{
			Name: "client sends a close frame inside its CONNECT",
			End: func(t *testing.T, c *testbroker.WSClient) {
				if err := c.WriteFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusGoingAway, ""))); err != nil {
					t.Fatal(err)
				}
				c.ExpectClose(t, mqttws.CloseGoingAway, 5*time.Second)
			},
		},
		{
			Name: "client drops TCP inside its CONNECT",
			End:  func(_ *testing.T, c *testbroker.WSClient) { _ = c.Conn.Close() },
		},
	}...)
	for _, tt := range tests {
		t.Run(tt.Name, func(t *testing.T) {
			t.Parallel()
			srv, served := serveRecording(t, backend.Dial(broker))
			var c *testbroker.WSClient
			if tt.Connect {
				c = testbroker.ConnectRaw(t, srv.URL, testbroker.ClientID("ending"))
			} else {
				c = testbroker.DialWS(t, srv.URL)
				connect := testbroker.ConnectPacket(testbroker.ClientID("ending"), 60)
				if err := c.WriteFrame(ws.NewBinaryFrame(connect[:5])); err != nil {
					t.Fatal(err)
				}
			}
			tt.End(t, c)
			select {
			case err := <-served:
				if err != nil {
					t.Errorf("ServeStream returned %v, want nil: nothing failed", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("ServeStream did not return within 10s")
			}
		})
	}
}
