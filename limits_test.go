package mqttws_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/internal/testbroker"
)

// dialFrom dials url from the loopback address local (all of 127.0.0.0/8
// is loopback on Linux) and returns the upgraded connection or the HTTP
// status of the refusal.
func dialFrom(t *testing.T, url, local string, header http.Header) (net.Conn, int) {
	t.Helper()
	d := ws.Dialer{
		Protocols: []string{"mqtt"},
		Header:    ws.HandshakeHeaderHTTP(header),
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
			return nd.DialContext(ctx, network, addr)
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	conn, _, _, err := d.Dial(ctx, url)
	var se ws.StatusError
	switch {
	case err == nil:
		t.Cleanup(func() { _ = conn.Close() })
		return conn, http.StatusSwitchingProtocols
	case errors.As(err, &se):
		return nil, int(se)
	}
	t.Fatalf("dial from %s: %v", local, err)
	return nil, 0
}

// TestMaxConnectionsPerAddr: one client address cannot take every slot;
// another still gets in, and a slot given back can be taken again.
func TestMaxConnectionsPerAddr(t *testing.T) {
	t.Parallel()
	const limit = 3
	h := &mqttws.Handler{
		Backend:               mqttws.BackendFunc(echo),
		MaxConnectionsPerAddr: limit,
		Logger:                discardLogger(),
	}
	url := serve(t, h)
	var held []net.Conn
	for i := range limit {
		conn, status := dialFrom(t, url, "127.0.0.2", nil)
		if status != http.StatusSwitchingProtocols {
			t.Fatalf("connection %d: status %d, want 101", i, status)
		}
		held = append(held, conn)
	}
	for range 5 {
		if _, status := dialFrom(t, url, "127.0.0.2", nil); status != http.StatusTooManyRequests {
			t.Fatalf("over the cap: status %d, want 429", status)
		}
	}
	if _, status := dialFrom(t, url, "127.0.0.3", nil); status != http.StatusSwitchingProtocols {
		t.Fatalf("another address: status %d, want 101", status)
	}
	if got := h.Stats().Refused["max_connections_per_addr"]; got != 5 {
		t.Fatalf("refused max_connections_per_addr = %d, want 5", got)
	}
	_ = held[0].Close()
	deadline := time.Now().Add(testTimeout)
	for {
		_, status := dialFrom(t, url, "127.0.0.2", nil)
		if status == http.StatusSwitchingProtocols {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a slot given back was not reusable: status %d", status)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMaxConnectionsPerAddrCountsTheForwardedClient: behind a trusted proxy,
// the cap is per client, not per proxy.
func TestMaxConnectionsPerAddrCountsTheForwardedClient(t *testing.T) {
	t.Parallel()
	h := &mqttws.Handler{
		Backend:               mqttws.BackendFunc(echo),
		MaxConnectionsPerAddr: 1,
		TrustedProxies:        []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Logger:                discardLogger(),
	}
	url := serve(t, h)
	from := func(client string) http.Header { return http.Header{"X-Forwarded-For": {client}} }
	if _, status := dialFrom(t, url, "127.0.0.2", from("203.0.113.7")); status != http.StatusSwitchingProtocols {
		t.Fatalf("first client: %d", status)
	}
	if _, status := dialFrom(t, url, "127.0.0.2", from("203.0.113.7")); status != http.StatusTooManyRequests {
		t.Fatalf("same client again: %d, want 429", status)
	}
	if _, status := dialFrom(t, url, "127.0.0.2", from("203.0.113.8")); status != http.StatusSwitchingProtocols {
		t.Fatalf("other client through the same proxy: %d, want 101", status)
	}
	// IPv6 clients count per /64.
	if _, status := dialFrom(t, url, "127.0.0.2", from("2001:db8:1:2::1")); status != http.StatusSwitchingProtocols {
		t.Fatalf("IPv6 client: %d", status)
	}
	if _, status := dialFrom(t, url, "127.0.0.2", from("2001:db8:1:2::ffff")); status != http.StatusTooManyRequests {
		t.Fatalf("IPv6 client in the same /64: %d, want 429", status)
	}
}

// TestServerTimeoutsDoNotReachWebSockets: http.Server's ReadTimeout,
// WriteTimeout and IdleTimeout, which guard plain HTTP, set deadlines on the
// connection before the hijack; a WebSocket connection outlives them.
func TestServerTimeoutsDoNotReachWebSockets(t *testing.T) {
	t.Parallel()
	h := &mqttws.Handler{Backend: mqttws.BackendFunc(echo), Logger: discardLogger()}
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ReadTimeout = 100 * time.Millisecond
	srv.Config.WriteTimeout = 100 * time.Millisecond
	srv.Config.IdleTimeout = 100 * time.Millisecond
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		_ = h.Shutdown(context.Background())
	})
	c := dial(t, "ws"+strings.TrimPrefix(srv.URL, "http")+"/mqtt")
	for i := range 4 {
		time.Sleep(150 * time.Millisecond)
		msg := []byte{0xc0, 0, byte(i)}
		c.send(binaryFrame(msg))
		if got := c.readData(len(msg)); !bytes.Equal(got, msg) {
			t.Fatalf("round %d: echo %x, want %x", i, got, msg)
		}
	}
}

// TestRefusalsAreLoggedWithReasonAndRateLimited: a browser hides why it was
// refused, so the log says it at info level; a flood logs a bounded number
// of lines and then says how many it left out.
func TestRefusalsAreLoggedWithReasonAndRateLimited(t *testing.T) {
	t.Parallel()
	var log testbroker.LockedBuffer
	h := &mqttws.Handler{
		Backend: mqttws.BackendFunc(echo),
		Logger:  slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	url := serve(t, h)
	const requests = 60
	for range requests {
		status, _ := upgradeStatus(t, url, http.Header{"Origin": {"https://evil.example"}})
		if status != http.StatusForbidden {
			t.Fatalf("status %d, want 403", status)
		}
	}
	lines := strings.Count(log.String(), "mqttws: request refused")
	if lines == 0 || lines >= requests {
		t.Fatalf("%d refusal lines for %d refusals, want some but fewer", lines, requests)
	}
	if !strings.Contains(log.String(), `origin \"https://evil.example\" is not allowed`) {
		t.Fatalf("the log does not give the reason:\n%s", log.String())
	}
	if got := h.Stats().Refused["origin"]; got != requests {
		t.Fatalf("Stats counts %d origin refusals, want %d: the log's limit must not touch the counts", got, requests)
	}
}

// addrOfItsOwn is a peer address of a listener's own type, in ip:port form.
type addrOfItsOwn string

func (a addrOfItsOwn) Network() string { return "tcp" }
func (a addrOfItsOwn) String() string  { return string(a) }

// ownAddrListener hands out connections that report their peer as an
// addrOfItsOwn, as some listener wrappers do.
type ownAddrListener struct{ net.Listener }

type ownAddrConn struct{ net.Conn }

func (c ownAddrConn) RemoteAddr() net.Addr { return addrOfItsOwn(c.Conn.RemoteAddr().String()) }

func (l ownAddrListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return ownAddrConn{c}, nil
}

// Behind a listener whose connections report their peer with an address
// type of their own, a stream still reports the client as a *net.TCPAddr
// (what a PROXY protocol header needs), and a connection that ends gives
// its MaxConnectionsPerAddr slot back: the next one from the address gets
// in. (Found in review: the slot leaked once the stream kept the
// connection's own address.)
func TestPerAddrSlotComesBackBehindAListenerWithItsOwnAddrType(t *testing.T) {
	t.Parallel()
	remotes := make(chan net.Addr, 3)
	h := &mqttws.Handler{
		Backend: mqttws.BackendFunc(func(ctx context.Context, c net.Conn) error {
			remotes <- c.RemoteAddr()
			_, err := c.Read(make([]byte, 16))
			return err
		}),
		MaxConnectionsPerAddr: 1,
		Logger:                discardLogger(),
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = ownAddrListener{srv.Listener}
	srv.Start()
	t.Cleanup(srv.Close)
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/mqtt"
	for i := range 3 {
		var conn net.Conn
		deadline := time.Now().Add(5 * time.Second)
		for {
			c, _, _, err := ws.Dialer{Protocols: []string{"mqtt"}}.Dial(context.Background(), url)
			if err == nil {
				conn = c
				break
			}
			// The previous connection's slot comes back once its
			// stream has ended, a moment after the client closed.
			var se ws.StatusError
			if !errors.As(err, &se) || int(se) != http.StatusTooManyRequests || time.Now().After(deadline) {
				t.Fatalf("connection %d: %v (active streams: %d)", i, err, h.Stats().Active)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if got := <-remotes; reflect.TypeOf(got) != reflect.TypeOf(&net.TCPAddr{}) {
			t.Errorf("connection %d: the stream reports its client as a %T, want a *net.TCPAddr", i, got)
		}
		_ = conn.Close()
	}
}
