package mochi_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/packets"
	"go.uber.org/goleak"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/backend/mochi"
	"github.com/mqttws/mqttws/internal/pahotest"
	"github.com/mqttws/mqttws/internal/testbroker"
)

// TestMain fails the package if any goroutine outlives the tests: every
// test closes its clients, its HTTP server, its handler and its broker.
// VerifyNone per test cannot work with parallel tests.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// broker is a mochi server with an mqttws handler in front of it.
type broker struct {
	server    *mqtt.Server
	http      *testbroker.Server
	closeOnce sync.Once

	// served receives what each ServeStream returned.
	served chan error
}

// startBroker starts a mochi server that allows every client, attaches an
// mqttws backend to it with opts and serves the handler over HTTP, after
// configure, if any, has set its fields. All of it is closed when the test
// ends.
func startBroker(t *testing.T, opts mochi.Options, configure ...func(*mqttws.Handler)) *broker {
	t.Helper()
	server := mqtt.New(&mqtt.Options{
		InlineClient: false,
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err := server.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	backend, err := mochi.Attach(server, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := server.Serve(); err != nil {
		t.Fatal(err)
	}
	b := &broker{server: server, served: make(chan error, 100)}
	t.Cleanup(b.closeServer)
	h := &mqttws.Handler{
		Backend: mqttws.BackendFunc(func(ctx context.Context, conn net.Conn) error {
			err := backend.ServeStream(ctx, conn)
			select {
			case b.served <- err:
			default:
			}
			return err
		}),
	}
	for _, f := range configure {
		f(h)
	}
	b.http = testbroker.Serve(t, h)
	return b
}

// closeServer closes the mochi server once (a second Close panics).
func (b *broker) closeServer() {
	b.closeOnce.Do(func() { _ = b.server.Close() })
}

func TestPublishedPayloadsArriveByteExact(t *testing.T) {
	t.Parallel()
	b := startBroker(t, mochi.Options{})
	pahotest.RunTransfers(t, b.http.URL)
}

func TestHooksReachTheStreamSubprotocol(t *testing.T) {
	t.Parallel()
	b := startBroker(t, mochi.Options{})
	hook := &subprotocolHook{got: make(chan string, 1)}
	if err := b.server.AddHook(hook, nil); err != nil {
		t.Fatal(err)
	}
	pahotest.Connect(t, b.http.URL, testbroker.ClientID("hook"), nil)
	select {
	case got := <-hook.got:
		if got != "mqtt" {
			t.Errorf("the OnConnect hook found subprotocol %q, want %q", got, "mqtt")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the OnConnect hook did not run within 5s")
	}
}

// subprotocolHook reports the WebSocket subprotocol of each client that
// connects, reached through the client's Net.Conn.
type subprotocolHook struct {
	mqtt.HookBase
	got chan string
}

func (h *subprotocolHook) ID() string { return "subprotocol" }

func (h *subprotocolHook) Provides(b byte) bool { return b == mqtt.OnConnect }

func (h *subprotocolHook) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	got := fmt.Sprintf("no Subprotocol method on %T", cl.Net.Conn)
	if s, ok := cl.Net.Conn.(interface{ Subprotocol() string }); ok {
		got = s.Subprotocol()
	}
	select {
	case h.got <- got:
	default:
	}
	return nil
}

func TestServerCloseDisconnectsWebSocketClients(t *testing.T) {
	t.Parallel()
	b := startBroker(t, mochi.Options{})
	const clients = 3
	lost := make(chan error, clients)
	for range clients {
		pahotest.Connect(t, b.http.URL, testbroker.ClientID("close"), func(err error) { lost <- err })
	}
	b.http.WaitActiveStreams(clients, 5*time.Second)

	closed := make(chan struct{})
	go func() {
		b.closeServer()
		close(closed)
	}()
	timeout := time.After(10 * time.Second)
	for i := range clients {
		select {
		case err := <-lost:
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != int(mqttws.CloseNormal) {
				t.Errorf("client %d lost its connection with %v, want a close frame with %d", i+1, err, mqttws.CloseNormal)
			}
		case <-timeout:
			t.Fatalf("%d of %d clients saw their connection lost within 10s of Server.Close", i, clients)
		}
	}
	select {
	case <-closed:
	case <-timeout:
		t.Fatal("Server.Close did not return within 10s")
	}
	b.http.WaitActiveStreams(0, 5*time.Second)
}

func TestSessionTakeoverDoesNotWaitForUnresponsiveClient(t *testing.T) {
	t.Parallel()
	b := startBroker(t, mochi.Options{})
	id := testbroker.ClientID("takeover")
	// The old client: from here on, it reads nothing and answers nothing.
	testbroker.ConnectRaw(t, b.http.URL, id)

	// mochi closes the old client before it answers the new one: that close
	// must not wait for the old client's close frame (up to the handler's
	// CloseTimeout, 5s).
	start := time.Now()
	testbroker.ConnectRaw(t, b.http.URL, id)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the new client got its CONNACK after %v, want it at once", d)
	}
}

func TestServerCloseClosesUnresponsiveClientsTogether(t *testing.T) {
	t.Parallel()
	const (
		clients      = 6
		closeTimeout = 500 * time.Millisecond
	)
	b := startBroker(t, mochi.Options{}, func(h *mqttws.Handler) { h.CloseTimeout = closeTimeout })
	for range clients {
		testbroker.ConnectRaw(t, b.http.URL, testbroker.ClientID("unresponsive"))
	}

	// Each close waits CloseTimeout for a close frame that never comes;
	// mochi closes its clients one after another, so the waits must overlap.
	start := time.Now()
	b.closeServer()
	if d := time.Since(start); d > 3*closeTimeout {
		t.Errorf("Server.Close took %v with %d unresponsive clients, want about one CloseTimeout (%v)", d, clients, closeTimeout)
	}
	b.http.WaitActiveStreams(0, 5*time.Second)
}

func TestStreamAfterServerCloseClosesWith1001(t *testing.T) {
	t.Parallel()
	b := startBroker(t, mochi.Options{})
	b.closeServer()
	c := testbroker.DialWS(t, b.http.URL)
	cf := c.ExpectClose(t, mqttws.CloseGoingAway, 5*time.Second)
	t.Logf("close frame after Server.Close: %d %q", cf.Code, cf.Reason)
	select {
	case err := <-b.served:
		if !errors.Is(err, mochi.ErrClosed) {
			t.Errorf("ServeStream returned %v, want an error matching mochi.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeStream did not return within 5s")
	}
}

func TestHandlerShutdownClosesClientsWith1001(t *testing.T) {
	t.Parallel()
	b := startBroker(t, mochi.Options{})
	const clients = 2
	lost := make(chan error, clients)
	for range clients {
		pahotest.Connect(t, b.http.URL, testbroker.ClientID("shutdown"), func(err error) { lost <- err })
	}
	if n := atomic.LoadInt64(&b.server.Info.ClientsConnected); n != clients {
		t.Fatalf("mochi counts %d connected clients, want %d", n, clients)
	}

	b.http.Close()
	for i := range clients {
		select {
		case err := <-lost:
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != int(mqttws.CloseGoingAway) {
				t.Errorf("client %d lost its connection with %v, want a close frame with %d", i+1, err, mqttws.CloseGoingAway)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of %d clients saw their connection lost within 5s of Handler.Shutdown", i, clients)
		}
	}
	// Shutdown waited for ServeStream, so mochi has dropped the clients.
	if n := atomic.LoadInt64(&b.server.Info.ClientsConnected); n != 0 {
		t.Errorf("mochi counts %d connected clients after Handler.Shutdown, want 0", n)
	}
}

func TestClientWithoutConnectClosesWith1008AfterConnectTimeout(t *testing.T) {
	t.Parallel()
	const connectTimeout = 200 * time.Millisecond
	b := startBroker(t, mochi.Options{ConnectTimeout: connectTimeout})
	connect := testbroker.ConnectPacket(testbroker.ClientID("slow"), 60)
	tests := []struct {
		name string
		sent []byte // what the client sends of its CONNECT
	}{
		{
			name: "nothing sent",
			sent: nil,
		},
		{
			name: "half a CONNECT sent",
			sent: connect[:len(connect)/2],
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// The deadline starts after the upgrade, so after start.
			start := time.Now()
			c := testbroker.DialWS(t, b.http.URL)
			if len(tt.sent) > 0 {
				if err := c.WriteFrame(ws.NewBinaryFrame(tt.sent)); err != nil {
					t.Fatal(err)
				}
			}
			cf, err := c.ReadClose(5 * time.Second)
			if err != nil {
				t.Fatalf("a client that never completes its CONNECT: %v", err)
			}
			elapsed := time.Since(start)
			t.Logf("close frame %d %q %v after the WebSocket dial began", cf.Code, cf.Reason, elapsed)
			if want := "no MQTT CONNECT packet within 200ms"; cf.Code != mqttws.ClosePolicyViolation || cf.Reason != want {
				t.Errorf("close frame %d %q, want %d %q", cf.Code, cf.Reason, mqttws.ClosePolicyViolation, want)
			}
			if elapsed < connectTimeout || elapsed > connectTimeout+2*time.Second {
				t.Errorf("closed %v after the WebSocket dial began, want a little over %v", elapsed, connectTimeout)
			}
		})
	}
}

func TestConnectedClientOutlivesConnectTimeout(t *testing.T) {
	t.Parallel()
	const connectTimeout = 200 * time.Millisecond
	b := startBroker(t, mochi.Options{ConnectTimeout: connectTimeout})
	c := testbroker.DialWS(t, b.http.URL)
	if err := c.WriteFrame(ws.NewBinaryFrame(testbroker.ConnectPacket(testbroker.ClientID("idle"), 60))); err != nil {
		t.Fatal(err)
	}
	c.ExpectData(t, testbroker.ConnackAccepted)

	time.Sleep(3 * connectTimeout)
	pingreq, pingresp := []byte{0xc0, 0x00}, []byte{0xd0, 0x00}
	if err := c.WriteFrame(ws.NewBinaryFrame(pingreq)); err != nil {
		t.Fatalf("PINGREQ after %v idle: %v", 3*connectTimeout, err)
	}
	c.ExpectData(t, pingresp)
}

func TestKeepaliveExpiryClosesSilentClient(t *testing.T) {
	t.Parallel()
	b := startBroker(t, mochi.Options{})
	c := testbroker.DialWS(t, b.http.URL)
	// mochi allows 1.5 times the keepalive, in whole seconds: 1s here,
	// counted from after it read CONNECT, so after start. It sets the
	// deadline on the stream, so the stream's deadlines must work.
	start := time.Now()
	if err := c.WriteFrame(ws.NewBinaryFrame(testbroker.ConnectPacket(testbroker.ClientID("silent"), 1))); err != nil {
		t.Fatal(err)
	}
	c.ExpectData(t, testbroker.ConnackAccepted)
	c.ExpectClose(t, mqttws.CloseNormal, 5*time.Second)
	if elapsed := time.Since(start); elapsed < time.Second {
		t.Errorf("closed %v after the CONNECT was sent, want a little over the 1s keepalive allowance", elapsed)
	}
	b.http.WaitActiveStreams(0, 5*time.Second)
}

func TestConnectSplitIntoOneByteFramesGetsConnack(t *testing.T) {
	t.Parallel()
	b := startBroker(t, mochi.Options{ConnectTimeout: 5 * time.Second})
	tests := []struct {
		name string
		// frame returns the frame carrying byte i of n.
		frame func(i, n int, p []byte) ws.Frame
	}{
		{
			name: "one message per byte",
			frame: func(_, _ int, p []byte) ws.Frame {
				return ws.NewBinaryFrame(p)
			},
		},
		{
			name: "one message in continuation frames",
			frame: func(i, n int, p []byte) ws.Frame {
				op := ws.OpContinuation
				if i == 0 {
					op = ws.OpBinary
				}
				return ws.NewFrame(op, i == n-1, p)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := testbroker.DialWS(t, b.http.URL)
			connect := testbroker.ConnectPacket(testbroker.ClientID("split"), 60)
			var pings [][]byte
			for i := range connect {
				if i > 0 {
					ping := fmt.Appendf(nil, "ping %d", i)
					pings = append(pings, ping)
					if err := c.WriteFrame(ws.NewPingFrame(ping)); err != nil {
						t.Fatal(err)
					}
				}
				if err := c.WriteFrame(tt.frame(i, len(connect), connect[i:i+1])); err != nil {
					t.Fatal(err)
				}
			}

			connack, pongs, err := c.ReadData(len(testbroker.ConnackAccepted), 5*time.Second)
			if err != nil {
				t.Fatalf("CONNACK: %v", err)
			}
			if !bytes.Equal(connack, testbroker.ConnackAccepted) {
				t.Fatalf("CONNACK % x, want % x", connack, testbroker.ConnackAccepted)
			}
			if len(pongs) != len(pings) {
				t.Fatalf("%d pongs before the CONNACK, want one for each of the %d pings", len(pongs), len(pings))
			}
			for i := range pings {
				if !bytes.Equal(pongs[i], pings[i]) {
					t.Errorf("pong %d carries %q, want the ping's %q", i+1, pongs[i], pings[i])
				}
			}

			if err := c.WriteFrame(ws.NewBinaryFrame(testbroker.Disconnect)); err != nil {
				t.Fatal(err)
			}
			c.ExpectClose(t, mqttws.CloseNormal, 5*time.Second)
		})
	}
}

// expectServed waits for what ServeStream returned for the one client of b.
func (b *broker) expectServed(t *testing.T) error {
	t.Helper()
	select {
	case err := <-b.served:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("ServeStream did not return within 10s")
		return nil
	}
}

func TestClientGoingAwayIsNoBackendError(t *testing.T) {
	t.Parallel()
	tests := append(testbroker.Departures(), []testbroker.Departure{
		{
			Name:    "client sends a text frame (the stream closes with 1003)",
			Connect: true,
			End: func(t *testing.T, c *testbroker.WSClient) {
				if err := c.WriteFrame(ws.NewTextFrame([]byte("hello"))); err != nil {
					t.Fatal(err)
				}
				c.ExpectClose(t, mqttws.CloseUnsupportedData, 5*time.Second)
			},
		},
		{
			Name: "client sends a close frame inside its CONNECT",
			End: func(t *testing.T, c *testbroker.WSClient) {
				if err := c.WriteFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusGoingAway, ""))); err != nil {
					t.Fatal(err)
				}
				c.ExpectClose(t, mqttws.CloseGoingAway, 5*time.Second)
			},
		},
	}...)
	for _, tt := range tests {
		t.Run(tt.Name, func(t *testing.T) {
			t.Parallel()
			b := startBroker(t, mochi.Options{})
			var c *testbroker.WSClient
			if tt.Connect {
				c = testbroker.ConnectRaw(t, b.http.URL, testbroker.ClientID("leaving"))
			} else {
				c = testbroker.DialWS(t, b.http.URL)
				connect := testbroker.ConnectPacket(testbroker.ClientID("leaving"), 60)
				if err := c.WriteFrame(ws.NewBinaryFrame(connect[:5])); err != nil {
					t.Fatal(err)
				}
			}
			tt.End(t, c)
			if err := b.expectServed(t); err != nil {
				t.Errorf("ServeStream returned %v, want nil: the client went away, nothing failed", err)
			}
		})
	}
}

func TestBackendErrorsAreStillReturned(t *testing.T) {
	t.Parallel()
	errRefused := errors.New("refused by the test hook")
	tests := []struct {
		name    string
		hook    mqtt.Hook // added to the broker, when not nil
		connect []byte    // the client's first bytes; nil: none
		check   func(t *testing.T, err error)
	}{
		{
			name: "no CONNECT in time",
			check: func(t *testing.T, err error) {
				var ce *mqttws.CloseError
				if !errors.As(err, &ce) || ce.Code != mqttws.ClosePolicyViolation || ce.Reason != "no MQTT CONNECT packet within 200ms" {
					t.Errorf("ServeStream returned %v, want a CloseError with %d %q", err, mqttws.ClosePolicyViolation, "no MQTT CONNECT packet within 200ms")
				}
			},
		},
		{
			name:    "a hook refuses the CONNECT",
			hook:    &refusingHook{err: errRefused},
			connect: testbroker.ConnectPacket(testbroker.ClientID("refused"), 60),
			check: func(t *testing.T, err error) {
				if !errors.Is(err, errRefused) {
					t.Errorf("ServeStream returned %v, want the hook's error", err)
				}
			},
		},
		{
			name:    "first packet is not a CONNECT",
			connect: testbroker.PublishPacket("a/b", []byte("hello")),
			check: func(t *testing.T, err error) {
				if !errors.Is(err, packets.ErrProtocolViolationRequireFirstConnect) {
					t.Errorf("ServeStream returned %v, want mochi's %v", err, packets.ErrProtocolViolationRequireFirstConnect)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := startBroker(t, mochi.Options{ConnectTimeout: 200 * time.Millisecond})
			if tt.hook != nil {
				if err := b.server.AddHook(tt.hook, nil); err != nil {
					t.Fatal(err)
				}
			}
			c := testbroker.DialWS(t, b.http.URL)
			if tt.connect != nil {
				if err := c.WriteFrame(ws.NewBinaryFrame(tt.connect)); err != nil {
					t.Fatal(err)
				}
			}
			err := b.expectServed(t)
			t.Logf("ServeStream returned %v", err)
			tt.check(t, err)
		})
	}
}

// refusingHook fails every OnConnect with err.
type refusingHook struct {
	mqtt.HookBase
	err error
}

func (h *refusingHook) ID() string { return "refusing" }

func (h *refusingHook) Provides(b byte) bool { return b == mqtt.OnConnect }

func (h *refusingHook) OnConnect(*mqtt.Client, packets.Packet) error { return h.err }
