package backend_test

import (
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/pires/go-proxyproto"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/backend"
	"github.com/mqttws/mqttws/internal/testbroker"
)

// proxyListener is a broker stand-in that parses a PROXY protocol header
// (github.com/pires/go-proxyproto), reports the addresses it announces, and
// echoes the bytes that follow.
func proxyListener(t *testing.T) (addr string, announced <-chan *proxyproto.Header) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pln := &proxyproto.Listener{Listener: ln, ReadHeaderTimeout: 5 * time.Second}
	headers := make(chan *proxyproto.Header, 10)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := pln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				pc := c.(*proxyproto.Conn)
				_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
				var first [1]byte
				if _, err := io.ReadFull(pc, first[:]); err != nil { // reads the header too
					headers <- nil
					return
				}
				headers <- pc.ProxyHeader()
				_, _ = pc.Write(first[:])
				_, _ = io.Copy(pc, pc)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = pln.Close()
		wg.Wait()
	})
	return ln.Addr().String(), headers
}

func TestProxyProtocolAnnouncesTheClientAddress(t *testing.T) {
	for _, version := range []int{1, 2} {
		t.Run("v"+strconv.Itoa(version), func(t *testing.T) {
			t.Parallel()
			addr, announced := proxyListener(t)
			srv := serve(t, &backend.Dialer{Addresses: []string{addr}, ProxyProtocol: version})
			c := testbroker.DialWS(t, srv.URL)
			connect := testbroker.ConnectPacket(testbroker.ClientID("proxied"), 60)
			if err := c.WriteFrame(ws.NewBinaryFrame(connect)); err != nil {
				t.Fatal(err)
			}
			c.ExpectData(t, connect) // echoed after the header
			var h *proxyproto.Header
			select {
			case h = <-announced:
			case <-time.After(10 * time.Second):
				t.Fatal("no connection reached the broker")
			}
			if h == nil || h.Version != byte(version) || h.Command != proxyproto.PROXY {
				t.Fatalf("header %+v, want a PROXY command of version %d", h, version)
			}
			src, dst, ok := h.TCPAddrs()
			if !ok || src.String() != c.Conn.LocalAddr().String() || dst.String() != c.Conn.RemoteAddr().String() {
				t.Fatalf("announced %v → %v, want the client %v → %v", src, dst, c.Conn.LocalAddr(), c.Conn.RemoteAddr())
			}
		})
	}
}

func TestProxyProtocolCarriesTheAddressFromTrustedProxies(t *testing.T) {
	t.Parallel()
	addr, announced := proxyListener(t)
	h := &mqttws.Handler{
		Backend:        logged(t, &backend.Dialer{Addresses: []string{addr}, ProxyProtocol: 2}),
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	}
	srv := testbroker.Serve(t, h)
	d := ws.Dialer{Protocols: []string{"mqtt"}, Header: ws.HandshakeHeaderString("X-Forwarded-For: 198.51.100.23\r\n")}
	conn, _, _, err := d.Dial(t.Context(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	connect := testbroker.ConnectPacket(testbroker.ClientID("forwarded"), 60)
	if err := ws.WriteFrame(conn, ws.MaskFrame(ws.NewBinaryFrame(connect))); err != nil {
		t.Fatal(err)
	}
	select {
	case hdr := <-announced:
		if hdr == nil {
			t.Fatal("the broker got no PROXY protocol header")
		}
		src, _, ok := hdr.TCPAddrs()
		if !ok || src.IP.String() != "198.51.100.23" {
			t.Fatalf("announced source %v, want the forwarded client 198.51.100.23", src)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no connection reached the broker")
	}
}

func TestFailoverDialsTheNextNode(t *testing.T) {
	t.Parallel()
	down := testbroker.ClosedAddr(t)
	up := testbroker.StartMosquitto(t)
	srv := serve(t, backend.Dial(down, up))
	// Whichever node a client starts at, it ends up on the live one.
	for range 4 {
		c := testbroker.ConnectRaw(t, srv.URL, testbroker.ClientID("failover"))
		_ = c.Conn.Close()
	}
}

func TestStreamsAreSpreadOverTheNodes(t *testing.T) {
	t.Parallel()
	a, seenA := proxyListener(t)
	b, seenB := proxyListener(t)
	srv := serve(t, &backend.Dialer{Addresses: []string{a, b}, ProxyProtocol: 1})
	for range 4 {
		c := testbroker.DialWS(t, srv.URL)
		connect := testbroker.ConnectPacket(testbroker.ClientID("spread"), 60)
		if err := c.WriteFrame(ws.NewBinaryFrame(connect)); err != nil {
			t.Fatal(err)
		}
		c.ExpectData(t, connect)
	}
	if len(seenA) != 2 || len(seenB) != 2 {
		t.Fatalf("node A got %d streams, node B %d, want 2 each", len(seenA), len(seenB))
	}
}

// acceptOne is a broker stand-in that accepts one connection and hands it
// over.
func acceptOne(t *testing.T) (string, <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	return ln.Addr().String(), accepted
}

func TestClientResetClosesTheBrokerConnectionWithinASecond(t *testing.T) {
	t.Parallel()
	addr, brokerSide := acceptOne(t)
	srv := serve(t, backend.Dial(addr))
	c := testbroker.DialWS(t, srv.URL)
	var broker net.Conn
	select {
	case broker = <-brokerSide:
	case <-time.After(10 * time.Second):
		t.Fatal("no connection reached the broker")
	}
	defer broker.Close()
	_ = c.Conn.(*net.TCPConn).SetLinger(0)
	_ = c.Conn.Close() // a RST, no close frame
	start := time.Now()
	_ = broker.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := broker.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("broker side read %v, want io.EOF", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("broker connection closed %v after the client's RST", d)
	}
}

func TestBrokerKilledMidStreamClosesWith1011(t *testing.T) {
	t.Parallel()
	addr, brokerSide := acceptOne(t)
	srv := serve(t, backend.Dial(addr))
	c := testbroker.DialWS(t, srv.URL)
	connect := testbroker.ConnectPacket(testbroker.ClientID("killed"), 60)
	if err := c.WriteFrame(ws.NewBinaryFrame(connect)); err != nil {
		t.Fatal(err)
	}
	broker := <-brokerSide
	if _, err := io.ReadFull(broker, make([]byte, len(connect))); err != nil {
		t.Fatal(err)
	}
	if _, err := broker.Write(testbroker.ConnackAccepted); err != nil {
		t.Fatal(err)
	}
	c.ExpectData(t, testbroker.ConnackAccepted)
	if err := c.WriteFrame(ws.NewBinaryFrame(pingreq)); err != nil {
		t.Fatal(err)
	}
	_ = broker.(*net.TCPConn).SetLinger(0)
	_, _ = broker.Read(make([]byte, 1))
	// A reset with unread data, from a broker that still accepts
	// connections: the connection broke, the broker did not go away.
	_ = broker.Close()
	c.ExpectClose(t, mqttws.CloseInternalError, 10*time.Second)
	srv.WaitActiveStreams(0, 10*time.Second)
}
