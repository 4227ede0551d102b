package backend_test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/backend"
	"github.com/mqttws/mqttws/internal/testbroker"
)

// serveNoFirstDataTimeout serves a handler relaying to d, without the
// handler's own FirstDataTimeout, so that only the Dialer's CONNECT deadline
// can close a silent client.
func serveNoFirstDataTimeout(t *testing.T, d *backend.Dialer) *testbroker.Server {
	t.Helper()
	return testbroker.Serve(t, &mqttws.Handler{Backend: logged(t, d), FirstDataTimeout: -1})
}

// echoListener is a broker stand-in that echoes what it receives on each
// connection.
func echoListener(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveEcho(t, ln, 0)
	return ln.Addr().String()
}

// slowTLSEchoListener is a TLS broker stand-in that waits delay after
// accepting a connection before it answers the TLS handshake, then echoes:
// a broker whose dial is slow. Dial it with the returned TLS config.
func slowTLSEchoListener(t *testing.T, delay time.Duration) (string, *tls.Config) {
	t.Helper()
	cert := testbroker.SelfSignedCert(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsLn := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert.Certificate}})
	serveEcho(t, tlsLn, delay)
	return ln.Addr().String(), &tls.Config{RootCAs: cert.Pool}
}

// serveEcho accepts connections on ln and echoes each, after delay, until
// the test ends.
func serveEcho(t testing.TB, ln net.Listener, delay time.Duration) {
	t.Helper()
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
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				time.Sleep(delay) // the TLS handshake, if any, waits for the first read
				_, _ = io.Copy(c, c)
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
}

// connectWithLengthBytes returns a CONNECT packet whose body is body and
// whose Remaining Length is encoded in exactly size bytes (padded with
// continuation bytes when the value needs fewer, which MQTT 3.1.1 allows).
func connectWithLengthBytes(body []byte, size int) []byte {
	p := []byte{0x10}
	n := len(body)
	for i := range size {
		b := byte(n % 128)
		n /= 128
		if i < size-1 {
			b |= 0x80
		}
		p = append(p, b)
	}
	if n != 0 {
		panic(fmt.Sprintf("a body of %d bytes needs more than %d length bytes", len(body), size))
	}
	return append(p, body...)
}

func TestClientWithoutWholeConnectClosesWith1008(t *testing.T) {
	t.Parallel()
	const connectTimeout = 300 * time.Millisecond
	connect := testbroker.ConnectPacket(testbroker.ClientID("late"), 60)
	longConnect := testbroker.ConnectPacketWithWill(testbroker.ClientID("late"), 60, "will/topic", bytes.Repeat([]byte("w"), 200))
	mosquitto := func(t *testing.T) *backend.Dialer {
		return backend.Dial(testbroker.StartMosquitto(t))
	}
	// A broker whose dial never ends: the TLS handshake is never answered.
	neverDialed := func(t *testing.T) *backend.Dialer {
		return &backend.Dialer{Addresses: []string{silentListener(t)}, TLSConfig: &tls.Config{}, Timeout: time.Minute}
	}
	tests := []struct {
		name   string
		dialer func(t *testing.T) *backend.Dialer
		frames [][]byte // the binary frames the client sends
	}{
		{
			name:   "nothing sent",
			dialer: mosquitto,
		},
		{
			name:   "an empty binary frame",
			dialer: mosquitto,
			frames: [][]byte{{}},
		},
		{
			name:   "half a CONNECT",
			dialer: mosquitto,
			frames: [][]byte{connect[:len(connect)/2]},
		},
		{
			name:   "a CONNECT with a 2-byte Remaining Length, 50 bytes short",
			dialer: mosquitto,
			frames: [][]byte{longConnect[:len(longConnect)-50]},
		},
		{
			name:   "a fixed header cut inside the Remaining Length",
			dialer: mosquitto,
			frames: [][]byte{{0x10, 0x80}},
		},
		{
			name:   "nothing sent while the dial goes on",
			dialer: neverDialed,
		},
		{
			name:   "half a CONNECT while the dial goes on",
			dialer: neverDialed,
			frames: [][]byte{connect[:len(connect)/2]},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := tt.dialer(t)
			d.ConnectTimeout = connectTimeout
			srv := serveNoFirstDataTimeout(t, d)
			// The deadline starts after the upgrade, so after start.
			start := time.Now()
			c := testbroker.DialWS(t, srv.URL)
			for _, f := range tt.frames {
				if err := c.WriteFrame(ws.NewBinaryFrame(f)); err != nil {
					t.Fatal(err)
				}
			}
			cf := c.ExpectClose(t, mqttws.ClosePolicyViolation, 5*time.Second)
			elapsed := time.Since(start)
			t.Logf("close frame %d %q %v after the WebSocket dial began", cf.Code, cf.Reason, elapsed)
			if want := "no MQTT CONNECT packet within 300ms"; cf.Reason != want {
				t.Errorf("close reason %q, want %q", cf.Reason, want)
			}
			if elapsed < connectTimeout || elapsed > connectTimeout+2*time.Second {
				t.Errorf("closed %v after the WebSocket dial began, want a little over %v", elapsed, connectTimeout)
			}
			srv.WaitActiveStreams(0, 5*time.Second)
		})
	}
}

func TestFirstPacketNotConnectClosesWith1002BeforeReachingTheBroker(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		frames [][]byte // the binary frames the client sends
		gap    bool     // wait between frames, so that each is read alone
		reason string
	}{
		{
			name:   "PUBLISH",
			frames: [][]byte{testbroker.PublishPacket("a/b", []byte("hello"))},
			reason: "first MQTT packet is PUBLISH, not CONNECT",
		},
		{
			name:   "PINGREQ",
			frames: [][]byte{{0xc0, 0x00}},
			reason: "first MQTT packet is PINGREQ, not CONNECT",
		},
		{
			name:   "reserved type 0",
			frames: [][]byte{{0x00, 0x00}},
			reason: "first MQTT packet is of reserved type 0, not CONNECT",
		},
		{
			name:   "CONNECT with flags set",
			frames: [][]byte{{0x12, 0x00}},
			reason: "malformed MQTT CONNECT: fixed header flags 0x2, want 0",
		},
		{
			name:   "Remaining Length of 5 bytes, one byte per frame",
			frames: [][]byte{{0x10}, {0xff}, {0xff}, {0xff}, {0xff}},
			gap:    true,
			reason: "malformed MQTT CONNECT: Remaining Length longer than 4 bytes",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr, brokerSide := acceptOne(t)
			srv := serve(t, &backend.Dialer{Addresses: []string{addr}, ConnectTimeout: 5 * time.Second})
			c := testbroker.DialWS(t, srv.URL)
			// The broker is there before the first byte: it still gets
			// none of them.
			var broker net.Conn
			select {
			case broker = <-brokerSide:
			case <-time.After(10 * time.Second):
				t.Fatal("no connection reached the broker")
			}
			defer broker.Close()
			for i, f := range tt.frames {
				if tt.gap && i > 0 {
					time.Sleep(50 * time.Millisecond)
				}
				if err := c.WriteFrame(ws.NewBinaryFrame(f)); err != nil {
					t.Fatal(err)
				}
			}
			cf := c.ExpectClose(t, mqttws.CloseProtocolError, 2*time.Second)
			if cf.Reason != tt.reason {
				t.Errorf("close reason %q, want %q", cf.Reason, tt.reason)
			}
			_ = broker.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(broker)
			if err != nil || len(got) != 0 {
				t.Errorf("the broker read % x and then %v, want nothing and the end of the connection", got, err)
			}
		})
	}
}

// Answers to a PINGREQ: mosquitto's PINGRESP, or an echo's PINGREQ.
var (
	pingreq       = []byte{0xc0, 0x00}
	pingresp      = []byte{0xd0, 0x00}
	echoedPingreq = pingreq
)

// expectServedPastDeadline checks that the stream of c, whose CONNECT went
// out at start, outlives the CONNECT deadline: the watch saw the CONNECT
// end where it ends. The broker answers a PINGREQ with pong.
func expectServedPastDeadline(t *testing.T, c *testbroker.WSClient, start time.Time, connectTimeout time.Duration, pong []byte) {
	t.Helper()
	time.Sleep(time.Until(start.Add(connectTimeout + 200*time.Millisecond)))
	if err := c.WriteFrame(ws.NewBinaryFrame(pingreq)); err != nil {
		t.Fatalf("PINGREQ past the CONNECT deadline: %v", err)
	}
	c.ExpectData(t, pong)
}

func TestConnectInOneByteFramesIsRelayedByteExact(t *testing.T) {
	t.Parallel()
	connect := testbroker.ConnectPacket(testbroker.ClientID("split"), 60)
	publish := testbroker.PublishPacket("split/topic", []byte("after the CONNECT"))
	tests := []struct {
		name   string
		broker func(t testing.TB) string
		sent   []byte // sent one byte per frame, with pings in between
		want   []byte // what comes back
		pong   []byte // the answer to a PINGREQ
	}{
		{
			name:   "mosquitto answers CONNACK",
			broker: testbroker.StartMosquitto,
			sent:   connect,
			want:   testbroker.ConnackAccepted,
			pong:   pingresp,
		},
		{
			name:   "an echo gets the same bytes",
			broker: echoListener,
			sent:   append(append([]byte{}, connect...), publish...),
			want:   append(append([]byte{}, connect...), publish...),
			pong:   echoedPingreq,
		},
	}
	const connectTimeout = 2 * time.Second
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := serve(t, &backend.Dialer{Addresses: []string{tt.broker(t)}, ConnectTimeout: connectTimeout})
			start := time.Now()
			c := testbroker.DialWS(t, srv.URL)
			for i := range tt.sent {
				if i > 0 {
					if err := c.WriteFrame(ws.NewPingFrame(fmt.Appendf(nil, "ping %d", i))); err != nil {
						t.Fatal(err)
					}
				}
				if err := c.WriteFrame(ws.NewBinaryFrame(tt.sent[i : i+1])); err != nil {
					t.Fatal(err)
				}
			}
			got, _, err := c.ReadData(len(tt.want), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("got % x, want % x", got, tt.want)
			}
			expectServedPastDeadline(t, c, start, connectTimeout, tt.pong)
		})
	}
}

func TestConnectWithFourByteRemainingLengthIsServed(t *testing.T) {
	t.Parallel()
	// mosquitto takes a length padded to 4 bytes; a length that needs 4
	// bytes (2 MiB and more) is not a valid MQTT 3.1.1 CONNECT, so an echo
	// stand-in takes that one.
	small := testbroker.ConnectPacket(testbroker.ClientID("padded"), 60)
	padded := connectWithLengthBytes(small[2:], 4) // small's length fits 1 byte
	large := connectWithLengthBytes(bytes.Repeat([]byte("0123456789abcdef"), (2<<20)/16+1), 4)
	publish := testbroker.PublishPacket("after/connect", []byte("x"))
	tests := []struct {
		name   string
		broker func(t testing.TB) string
		sent   []byte
		want   []byte
		pong   []byte // the answer to a PINGREQ
	}{
		{
			name:   "mosquitto, length padded to 4 bytes",
			broker: testbroker.StartMosquitto,
			sent:   padded,
			want:   testbroker.ConnackAccepted,
			pong:   pingresp,
		},
		{
			name:   "echo, a CONNECT over 2 MiB, then a PUBLISH",
			broker: echoListener,
			sent:   append(append([]byte{}, large...), publish...),
			want:   append(append([]byte{}, large...), publish...),
			pong:   echoedPingreq,
		},
	}
	const connectTimeout = 2 * time.Second
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := serve(t, &backend.Dialer{Addresses: []string{tt.broker(t)}, ConnectTimeout: connectTimeout})
			start := time.Now()
			c := testbroker.DialWS(t, srv.URL)
			// Written while the echo is read, or both ways fill up.
			written := make(chan error, 1)
			go func() { written <- c.WriteFrame(ws.NewBinaryFrame(tt.sent)) }()
			got, _, err := c.ReadData(len(tt.want), 10*time.Second)
			if werr := <-written; werr != nil {
				t.Fatal(werr)
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("got %d bytes, not the %d bytes wanted (first % x)", len(got), len(tt.want), got[:min(len(got), 16)])
			}
			expectServedPastDeadline(t, c, start, connectTimeout, tt.pong)
		})
	}
}

func TestSlowDialDoesNotCountAgainstTheClient(t *testing.T) {
	t.Parallel()
	const connectTimeout = 300 * time.Millisecond
	tests := []struct {
		name    string
		connect []byte
	}{
		{
			name:    "CONNECT smaller than a copy buffer",
			connect: testbroker.ConnectPacket(testbroker.ClientID("small"), 60),
		},
		{
			name:    "CONNECT larger than a copy buffer",
			connect: testbroker.ConnectPacketWithWill(testbroker.ClientID("large"), 60, "will/topic", bytes.Repeat([]byte("w"), 4096)),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr, tlsConfig := slowTLSEchoListener(t, 3*connectTimeout)
			srv := serve(t, &backend.Dialer{Addresses: []string{addr}, TLSConfig: tlsConfig, ConnectTimeout: connectTimeout})
			c := testbroker.DialWS(t, srv.URL)
			if err := c.WriteFrame(ws.NewBinaryFrame(tt.connect)); err != nil {
				t.Fatal(err)
			}
			c.ExpectData(t, tt.connect)
			// The echo came after the dial: what was left of the CONNECT
			// deadline, if anything, ran from there.
			expectServedPastDeadline(t, c, time.Now(), connectTimeout, echoedPingreq)
		})
	}
}

func TestConnectedClientOutlivesConnectTimeout(t *testing.T) {
	t.Parallel()
	const connectTimeout = 200 * time.Millisecond
	srv := serve(t, &backend.Dialer{Addresses: []string{testbroker.StartMosquitto(t)}, ConnectTimeout: connectTimeout})
	c := testbroker.ConnectRaw(t, srv.URL, testbroker.ClientID("idle"))

	time.Sleep(3 * connectTimeout)
	if err := c.WriteFrame(ws.NewBinaryFrame(pingreq)); err != nil {
		t.Fatalf("PINGREQ after %v idle: %v", 3*connectTimeout, err)
	}
	c.ExpectData(t, pingresp)
}

func TestNegativeConnectTimeoutRelaysAnyBytes(t *testing.T) {
	t.Parallel()
	srv := serve(t, &backend.Dialer{Addresses: []string{echoListener(t)}, ConnectTimeout: -1})
	c := testbroker.DialWS(t, srv.URL)
	if err := c.WriteFrame(ws.NewBinaryFrame([]byte("not MQTT"))); err != nil {
		t.Fatal(err)
	}
	c.ExpectData(t, []byte("not MQTT"))
}
