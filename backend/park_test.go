//go:build linux

package backend_test

import (
	"context"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/backend"
	"github.com/mqttws/mqttws/internal/leakcheck"
	"github.com/mqttws/mqttws/internal/testbroker"
)

// relayGoroutines counts the goroutines running a relay or reading a
// stream for one.
func relayGoroutines() (int, string) {
	count := 0
	var seen []string
	for _, g := range leakcheck.Stacks() {
		if strings.Contains(g, "mqttws/backend.") || strings.Contains(g, "mqttws.(*Handler).serve") {
			count++
			seen = append(seen, g)
		}
	}
	return count, strings.Join(seen, "\n\n")
}

// expectRelayGoroutines waits up to 5s for want relay goroutines.
func expectRelayGoroutines(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, stacks := relayGoroutines()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d relay goroutines, want %d:\n\n%s", got, want, stacks)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type requestValueKey struct{}

// A parked relay keeps nothing of the HTTP request: the backend context's
// values (here one that Authorize added to the request's context) are let
// go once the Dialer detaches, so that net/http's request and connection
// contexts cost an idle connection nothing; the relay still carries both
// ways. Not parallel: it counts every relay goroutine of the process.
func TestParkedRelayLetsGoOfTheRequestsValues(t *testing.T) {
	broker := testbroker.StartMosquitto(t)
	released := make(chan struct{})
	srv := testbroker.Serve(t, &mqttws.Handler{
		Backend: logged(t, &backend.Dialer{Addresses: []string{broker}}),
		Authorize: func(r *http.Request) (context.Context, error) {
			v := new([64]byte)
			runtime.AddCleanup(v, func(ch chan struct{}) { close(ch) }, released)
			return context.WithValue(r.Context(), requestValueKey{}, v), nil
		},
	})
	c := testbroker.DialWS(t, srv.URL)
	if err := c.WriteFrame(ws.NewBinaryFrame(testbroker.ConnectPacket(testbroker.ClientID("released"), 60))); err != nil {
		t.Fatal(err)
	}
	c.ExpectData(t, testbroker.ConnackAccepted)
	expectRelayGoroutines(t, 0)

	deadline := time.Now().Add(5 * time.Second)
	for collected := false; !collected; {
		runtime.GC()
		select {
		case <-released:
			collected = true
		case <-time.After(20 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("the value Authorize put in the request's context is still reachable 5s after the relay parked")
			}
		}
	}

	if err := c.WriteFrame(ws.NewBinaryFrame([]byte{0xc0, 0x00})); err != nil { // PINGREQ
		t.Fatal(err)
	}
	c.ExpectData(t, []byte{0xd0, 0x00})
	if err := c.WriteFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))); err != nil {
		t.Fatal(err)
	}
	c.ExpectClose(t, mqttws.CloseNormal, 5*time.Second)
	srv.WaitActiveStreams(0, 5*time.Second)
}

// An idle relay to a broker over TCP holds no goroutine: both directions
// wait in the epoll set, and traffic either way, a WebSocket ping and its
// pong included, runs a goroutine only while bytes move. Not parallel: it
// counts every relay goroutine of the process.
func TestIdleRelayHoldsNoGoroutine(t *testing.T) {
	broker := testbroker.StartMosquitto(t)
	srv := testbroker.Serve(t, &mqttws.Handler{
		Backend:      logged(t, &backend.Dialer{Addresses: []string{broker}}),
		PingInterval: 300 * time.Millisecond,
	})
	const n = 20
	clients := make([]*testbroker.WSClient, n)
	for i := range clients {
		c := testbroker.DialWS(t, srv.URL)
		if err := c.WriteFrame(ws.NewBinaryFrame(testbroker.ConnectPacket(testbroker.ClientID("parked"), 60))); err != nil {
			t.Fatal(err)
		}
		c.ExpectData(t, testbroker.ConnackAccepted)
		clients[i] = c
	}
	expectRelayGoroutines(t, 0)

	pingreq, pingresp := []byte{0xc0, 0x00}, []byte{0xd0, 0x00}
	for _, c := range clients {
		if err := c.WriteFrame(ws.NewBinaryFrame(pingreq)); err != nil {
			t.Fatal(err)
		}
		c.ExpectData(t, pingresp)
	}
	expectRelayGoroutines(t, 0)

	// Each client gets a WebSocket ping once idle for PingInterval; its
	// pong wakes the relay, which parks again without an MQTT byte.
	for i, c := range clients {
		f, err := c.ReadFrame(5 * time.Second)
		if err != nil {
			t.Fatalf("client %d: waiting for a ping: %v", i, err)
		}
		if f.Header.OpCode != ws.OpPing {
			t.Fatalf("client %d: got a %v frame, want a ping", i, f.Header.OpCode)
		}
		if err := c.WriteFrame(ws.NewPongFrame(f.Payload)); err != nil {
			t.Fatal(err)
		}
	}
	expectRelayGoroutines(t, 0)

	// The relays still carry both ways, and end with the client's close.
	for _, c := range clients {
		if err := c.WriteFrame(ws.NewBinaryFrame(pingreq)); err != nil {
			t.Fatal(err)
		}
		c.ExpectData(t, pingresp)
		if err := c.WriteFrame(ws.NewBinaryFrame(testbroker.Disconnect)); err != nil {
			t.Fatal(err)
		}
		if err := c.WriteFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))); err != nil {
			t.Fatal(err)
		}
		c.ExpectClose(t, mqttws.CloseNormal, 5*time.Second)
	}
	expectRelayGoroutines(t, 0)
	srv.WaitActiveStreams(0, 5*time.Second)
}

// TestWrappedDialerDoesNotParkAndEndsWithTheStream: a Backend that wraps
// the Dialer may hand it a context that never ends (here
// context.WithoutCancel). A parked client side would then never learn that
// the stream closed, and the relay would hang; so the relay does not park,
// and Shutdown of a connection whose client stays silent ends it.
func TestWrappedDialerDoesNotParkAndEndsWithTheStream(t *testing.T) {
	broker := testbroker.StartMosquitto(t)
	d := logged(t, &backend.Dialer{Addresses: []string{broker}})
	h := &mqttws.Handler{
		Backend: mqttws.BackendFunc(func(ctx context.Context, c net.Conn) error {
			return d.ServeStream(context.WithoutCancel(ctx), c)
		}),
		CloseTimeout: 300 * time.Millisecond,
	}
	srv := testbroker.Serve(t, h)
	c := testbroker.DialWS(t, srv.URL)
	if err := c.WriteFrame(ws.NewBinaryFrame(testbroker.ConnectPacket(testbroker.ClientID("wrapped"), 60))); err != nil {
		t.Fatal(err)
	}
	c.ExpectData(t, testbroker.ConnackAccepted)
	time.Sleep(100 * time.Millisecond) // past the linger: a parked relay would have parked
	if n, stacks := relayGoroutines(); n == 0 {
		t.Fatalf("the relay of a wrapped Dialer parked:\n%s", stacks)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.Shutdown(ctx); err != nil { // the client does not answer the close
		t.Fatalf("Shutdown: %v, %d streams still active", err, h.Stats().Active)
	}
	if active := h.Stats().Active; active != 0 {
		t.Fatalf("%d streams active after Shutdown", active)
	}
}
