package backend_test

import (
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/pires/go-proxyproto"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/backend"
	"github.com/mqttws/mqttws/internal/testbroker"
)

// standIn is a broker stand-in on a loopback listener: each connection it
// accepts is counted and served by serve, until the test ends.
type standIn struct {
	addr     string
	accepted atomic.Int32
	ln       net.Listener
}

func startStandIn(t *testing.T, serve func(c net.Conn)) *standIn {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveStandIn(t, ln, serve)
}

func serveStandIn(t *testing.T, ln net.Listener, serve func(c net.Conn)) *standIn {
	t.Helper()
	s := &standIn{addr: ln.Addr().String(), ln: ln}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return s
}

// echo serves a connection as an echo: an answer to any CONNECT.
func echo(c net.Conn) {
	defer c.Close()
	_, _ = io.Copy(c, c)
}

// hang serves a connection as a hung broker: it reads and never answers.
func hang(c net.Conn) {
	defer c.Close()
	_, _ = io.Copy(io.Discard, c)
}

// connectAndExpectEcho opens a stream, sends a CONNECT and expects it back
// from an echoing node.
func connectAndExpectEcho(t *testing.T, url string) *testbroker.WSClient {
	t.Helper()
	c := testbroker.DialWS(t, url)
	connect := testbroker.ConnectPacket(testbroker.ClientID("node"), 60)
	if err := c.WriteFrame(ws.NewBinaryFrame(connect)); err != nil {
		t.Fatal(err)
	}
	c.ExpectData(t, connect)
	return c
}

// expectNode checks what d knows of its node i.
func expectNode(t *testing.T, d *backend.Dialer, i int, down bool, errHas string) {
	t.Helper()
	n := d.Nodes()[i]
	if n.Down != down {
		t.Errorf("node %d (%s): Down = %v, want %v (err %v)", i, n.Address, n.Down, down, n.Err)
	}
	if errHas != "" && (n.Err == nil || !strings.Contains(n.Err.Error(), errHas)) {
		t.Errorf("node %d (%s): Err = %v, want one saying %q", i, n.Address, n.Err, errHas)
	}
}

func TestNodeFailingBeforeItsAnswerIsLeftForTheNextWithTheSameConnect(t *testing.T) {
	t.Parallel()
	const connackTimeout = 300 * time.Millisecond
	tests := []struct {
		name     string
		serve    func(c net.Conn)
		markDown bool
		err      string
	}{
		{
			name:     "hung: accepts and never answers",
			serve:    hang,
			markDown: true,
			err:      "MQTT CONNECT to tcp 127.0.0.1:",
		},
		{
			name: "closes after the CONNECT",
			serve: func(c net.Conn) {
				_, _ = c.Read(make([]byte, 64))
				_ = c.Close()
			},
		},
		{
			name: "resets after the CONNECT",
			serve: func(c net.Conn) {
				_, _ = c.Read(make([]byte, 1))
				_ = c.(*net.TCPConn).SetLinger(0)
				_ = c.Close()
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			failing := startStandIn(t, tt.serve)
			live := startStandIn(t, echo)
			d := &backend.Dialer{Addresses: []string{failing.addr, live.addr}, ConnackTimeout: connackTimeout}
			srv := serve(t, d)
			start := time.Now()
			connectAndExpectEcho(t, srv.URL) // the first stream starts at the failing node
			if tt.markDown && time.Since(start) < connackTimeout {
				t.Errorf("the live node answered %v after the CONNECT, before the %v CONNACK deadline", time.Since(start), connackTimeout)
			}
			if failing.accepted.Load() != 1 || live.accepted.Load() != 1 {
				t.Fatalf("the failing node accepted %d connections, the live one %d, want 1 each", failing.accepted.Load(), live.accepted.Load())
			}
			expectNode(t, d, 0, tt.markDown, tt.err)
			expectNode(t, d, 1, false, "")
			if tt.markDown {
				for range 4 {
					connectAndExpectEcho(t, srv.URL)
				}
				if n := failing.accepted.Load(); n != 1 {
					t.Errorf("the hung node, marked down, got %d more streams, want none", n-1)
				}
			}
		})
	}
}

func TestHungSingleNodeClosesWith1013(t *testing.T) {
	t.Parallel()
	hung := startStandIn(t, hang)
	srv, served := serveRecording(t, &backend.Dialer{Addresses: []string{hung.addr}, ConnackTimeout: 200 * time.Millisecond})
	c := testbroker.DialWS(t, srv.URL)
	if err := c.WriteFrame(ws.NewBinaryFrame(testbroker.ConnectPacket(testbroker.ClientID("hung"), 60))); err != nil {
		t.Fatal(err)
	}
	cf := c.ExpectClose(t, mqttws.CloseTryAgainLater, 10*time.Second)
	if cf.Reason != "broker did not answer" {
		t.Errorf("close reason %q, want %q", cf.Reason, "broker did not answer")
	}
	err := <-served
	if want := "MQTT CONNECT to tcp " + hung.addr + ": no answer within 200ms"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("ServeStream returned %v, want it to say %q", err, want)
	}
}

func TestDeadNodeIsSkippedUntilItAnswersAProbe(t *testing.T) {
	t.Parallel()
	deadAddr := testbroker.ClosedAddr(t)
	live := startStandIn(t, echo)
	d := &backend.Dialer{Addresses: []string{deadAddr, live.addr}, ProbeInterval: 50 * time.Millisecond}
	srv := serve(t, d)
	for range 3 {
		connectAndExpectEcho(t, srv.URL)
	}
	expectNode(t, d, 0, true, "connection refused")

	// The node comes back: a probe, started by a new stream once the
	// interval is over, finds it answering.
	ln, err := net.Listen("tcp4", deadAddr)
	if err != nil {
		t.Fatalf("the dead node's port was taken meanwhile, by another process (rerun): %v", err)
	}
	back := serveStandIn(t, ln, echo)
	deadline := time.Now().Add(10 * time.Second)
	for d.Nodes()[0].Down {
		if time.Now().After(deadline) {
			t.Fatalf("node 0 still down 10s after it came back: %v", d.Nodes()[0].Err)
		}
		connectAndExpectEcho(t, srv.URL)
		time.Sleep(20 * time.Millisecond)
	}
	if back.accepted.Load() == 0 {
		t.Fatal("node 0 came up without a probe")
	}
	// Up again, it takes its turn.
	before := back.accepted.Load()
	for range 4 {
		connectAndExpectEcho(t, srv.URL)
	}
	if got := back.accepted.Load() - before; got != 2 {
		t.Errorf("node 0, back up, got %d of 4 new streams, want 2", got)
	}
}

func TestNodeThatDoesNotAnswerTheDialIsLeftAfterTimeout(t *testing.T) {
	t.Parallel()
	const dialTimeout = 300 * time.Millisecond
	hole := testbroker.BlackHole(t)
	live := startStandIn(t, echo)
	d := &backend.Dialer{Addresses: []string{hole, live.addr}, Timeout: dialTimeout}
	srv := serve(t, d)
	start := time.Now()
	connectAndExpectEcho(t, srv.URL) // starts at the black hole
	if took := time.Since(start); took < dialTimeout {
		t.Errorf("answered after %v, before the dial timeout of %v: the first stream did not start at the black hole", took, dialTimeout)
	}
	expectNode(t, d, 0, true, "no answer within 300ms")
	for range 3 {
		connectAndExpectEcho(t, srv.URL)
	}
	if n := live.accepted.Load(); n != 4 {
		t.Errorf("the live node got %d streams, want all 4", n)
	}
}

func TestEveryNodeDownIsStillTried(t *testing.T) {
	t.Parallel()
	a, b := testbroker.ClosedAddr(t), testbroker.ClosedAddr(t)
	d := &backend.Dialer{Addresses: []string{a, b}}
	srv := serve(t, d)
	c := testbroker.DialWS(t, srv.URL)
	c.ExpectClose(t, mqttws.CloseTryAgainLater, 10*time.Second)
	expectNode(t, d, 0, true, "")
	expectNode(t, d, 1, true, "")

	ln, err := net.Listen("tcp4", b)
	if err != nil {
		t.Fatalf("the node's port was taken meanwhile, by another process (rerun): %v", err)
	}
	serveStandIn(t, ln, echo)
	connectAndExpectEcho(t, srv.URL)
	expectNode(t, d, 1, false, "")
}

func TestBrokerEndingTheConnectionClosesWithWhatHappened(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// disconnect sends the client's DISCONNECT first.
		disconnect bool
		// closeListener stops the node from accepting connections.
		closeListener bool
		code          mqttws.CloseCode
		reason        string
		err           string // in what ServeStream returned; "" for nil
	}{
		{
			name:          "node gone without the client asking",
			closeListener: true,
			code:          1012,
			reason:        "broker went away",
			err:           "went away",
		},
		{
			name: "node still up closes without the client asking",
			code: mqttws.CloseNormal,
		},
		{
			name:          "node gone after the client's DISCONNECT",
			disconnect:    true,
			closeListener: true,
			code:          mqttws.CloseNormal,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			conns := make(chan net.Conn, 1)
			go func() {
				c, err := ln.Accept()
				if err == nil {
					conns <- c
				}
			}()
			srv, served := serveRecording(t, &backend.Dialer{Addresses: []string{ln.Addr().String()}})
			c := testbroker.DialWS(t, srv.URL)
			connect := testbroker.ConnectPacket(testbroker.ClientID("ending"), 60)
			if err := c.WriteFrame(ws.NewBinaryFrame(connect)); err != nil {
				t.Fatal(err)
			}
			broker := <-conns
			defer broker.Close()
			if _, err := io.ReadFull(broker, make([]byte, len(connect))); err != nil {
				t.Fatal(err)
			}
			if _, err := broker.Write(testbroker.ConnackAccepted); err != nil {
				t.Fatal(err)
			}
			c.ExpectData(t, testbroker.ConnackAccepted)
			if tt.disconnect {
				if err := c.WriteFrame(ws.NewBinaryFrame(testbroker.Disconnect)); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(broker, make([]byte, len(testbroker.Disconnect))); err != nil {
					t.Fatal(err)
				}
			}
			if tt.closeListener {
				_ = ln.Close()
			}
			_ = broker.Close()
			cf := c.ExpectClose(t, tt.code, 10*time.Second)
			if cf.Reason != tt.reason {
				t.Errorf("close reason %q, want %q", cf.Reason, tt.reason)
			}
			err = <-served
			switch {
			case tt.err == "" && err != nil:
				t.Errorf("ServeStream returned %v, want nil", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Errorf("ServeStream returned %v, want an error saying %q", err, tt.err)
			}
		})
	}
}

func TestHungNodeStaysDownWhileItFailsItsProbes(t *testing.T) {
	t.Parallel()
	hung := startStandIn(t, hang)
	live := startStandIn(t, echo)
	d := &backend.Dialer{
		Addresses:      []string{hung.addr, live.addr},
		ConnackTimeout: 200 * time.Millisecond,
		ProbeInterval:  50 * time.Millisecond,
	}
	srv := serve(t, d)
	connectAndExpectEcho(t, srv.URL) // left the hung node for the live one
	for range 10 {
		connectAndExpectEcho(t, srv.URL) // each may start a probe
		time.Sleep(100 * time.Millisecond)
	}
	expectNode(t, d, 0, true, "MQTT probe of tcp "+hung.addr+": no answer within 200ms")
	if n := live.accepted.Load(); n != 11 {
		t.Errorf("the live node got %d of 11 streams", n)
	}
	if n := hung.accepted.Load(); n < 2 {
		t.Errorf("the hung node got %d connections: the first stream's and no probe", n)
	}
}

func TestProbeOfANodeBehindProxyProtocolSendsALocalHeader(t *testing.T) {
	t.Parallel()
	for _, version := range []int{1, 2} {
		t.Run("v"+strconv.Itoa(version), func(t *testing.T) {
			t.Parallel()
			downAddr := testbroker.ClosedAddr(t)
			liveAddr, _ := proxyListener(t)
			d := &backend.Dialer{Addresses: []string{downAddr, liveAddr}, ProxyProtocol: version, ProbeInterval: 50 * time.Millisecond}
			srv := serve(t, d)
			connectAndExpectEcho(t, srv.URL)
			expectNode(t, d, 0, true, "connection refused")

			ln, err := net.Listen("tcp4", downAddr)
			if err != nil {
				t.Fatalf("the node's port was taken meanwhile, by another process (rerun): %v", err)
			}
			headers := make(chan *proxyproto.Header, 100)
			serveStandIn(t, &proxyproto.Listener{Listener: ln, ReadHeaderTimeout: 5 * time.Second}, func(c net.Conn) {
				defer c.Close()
				var first [1]byte
				if _, err := io.ReadFull(c, first[:]); err != nil { // reads the header too
					headers <- nil
					return
				}
				headers <- c.(*proxyproto.Conn).ProxyHeader()
				_, _ = c.Write(first[:])
				_, _ = io.Copy(c, c)
			})
			deadline := time.Now().Add(10 * time.Second)
			for d.Nodes()[0].Down {
				if time.Now().After(deadline) {
					t.Fatalf("node 0 still down 10s after it came back: %v", d.Nodes()[0].Err)
				}
				connectAndExpectEcho(t, srv.URL)
				time.Sleep(20 * time.Millisecond)
			}
			h := <-headers // the probe's
			if h == nil {
				t.Fatal("the probe sent no PROXY protocol header")
			}
			// go-proxyproto reads v1's "PROXY UNKNOWN" as LOCAL too.
			if h.Version != byte(version) || h.Command != proxyproto.LOCAL || h.TransportProtocol != proxyproto.UNSPEC {
				t.Errorf("the probe's header is version %d, command %#x, transport %#x; want version %d, LOCAL, UNSPEC",
					h.Version, h.Command, h.TransportProtocol, version)
			}
		})
	}
}

// The failure that issue 12 reported: with a node that does not answer the
// dial, every third new client lost its connection to the handler's
// first-data timeout (10s), which fired during the 10s dial. With the
// defaults now, the client routed there waits one dial timeout (3s) and is
// served by the next node; the others do not wait at all.
func TestBlackHoledNodeCostsNoClientItsConnection(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		connectTimeout time.Duration
	}{
		{
			name: "CONNECT read during the dial",
		},
		{
			name:           "no byte looked at",
			connectTimeout: -1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, b := startStandIn(t, echo), startStandIn(t, echo)
			d := &backend.Dialer{Addresses: []string{a.addr, testbroker.BlackHole(t), b.addr}, ConnectTimeout: tt.connectTimeout}
			srv := serve(t, d) // the handler's defaults: FirstDataTimeout 10s
			for range 6 {
				connectAndExpectEcho(t, srv.URL) // the second starts at the black hole
			}
			expectNode(t, d, 1, true, "no answer within 3s")
			if got := a.accepted.Load() + b.accepted.Load(); got != 6 {
				t.Errorf("the nodes that answer got %d of 6 streams", got)
			}
		})
	}
}
