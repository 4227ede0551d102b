package interop

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/backend"
	"github.com/mqttws/mqttws/backend/mochi"
	"github.com/mqttws/mqttws/internal/pahotest"
	"github.com/mqttws/mqttws/internal/testbroker"
	"github.com/mqttws/mqttws/interop/h2ws"
)

// h2Server serves h at /mqtt over TLS with HTTP/2 (and HTTP/1.1 for
// clients that ask for it) and returns the https URL and a client TLS
// configuration that trusts the server.
func h2Server(t *testing.T, h *mqttws.Handler) (string, *tls.Config) {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/mqtt", h)
	srv := httptest.NewUnstartedServer(mux)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("Handler.Shutdown: %v", err)
		}
		srv.Close()
	})
	return srv.URL + "/mqtt", srv.Client().Transport.(*http.Transport).TLSClientConfig
}

// inProcessMochi starts mochi with the mqttws backend attached.
func inProcessMochi(t *testing.T) mqttws.Backend {
	t.Helper()
	broker := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler), InlineClient: false})
	if err := broker.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	b, err := mochi.Attach(broker, mochi.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := broker.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = broker.Close() })
	return b
}

// h2Opener opens WebSocket streams to u on the one HTTP/2 connection c.
func h2Opener(t testing.TB, c *h2ws.Client, u string) pahotest.OpenFunc {
	return func() (net.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, resp, err := c.Open(ctx, u, []string{"mqtt"}, nil)
		if err != nil {
			return nil, err
		}
		if s == nil {
			return nil, fmt.Errorf("extended CONNECT answered %d", resp.StatusCode)
		}
		return s, nil
	}
}

func hostOf(t testing.TB, rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// TestHTTP2ManyStreamsOnOneConnection: MQTT clients on WebSocket streams
// of one HTTP/2 connection (RFC 8441), to mochi in process and to a real
// mosquitto through backend.Dial: every QoS and payload size arrives byte
// for byte while 100 streams share the connection, and a stream reset by
// its client disturbs none of the others.
func TestHTTP2ManyStreamsOnOneConnection(t *testing.T) {
	backends := []struct {
		name    string
		backend func(t *testing.T) mqttws.Backend
	}{
		{
			name:    "mochi",
			backend: inProcessMochi,
		},
		{
			name: "mosquitto",
			backend: func(t *testing.T) mqttws.Backend {
				return backend.Dial(testbroker.Start(t, testbroker.Options{}).Addr)
			},
		},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			h := &mqttws.Handler{Backend: b.backend(t), Logger: slog.New(slog.DiscardHandler)}
			u, conf := h2Server(t, h)
			c := dialH2(t, hostOf(t, u), conf)
			open := h2Opener(t, c, u)

			// The transfers open 2 streams each (36); idle MQTT clients
			// bring the connection to 100 streams, one of them reset.
			const streams = 100
			idle := streams - 2*len(testbroker.QoSLevels)*len(testbroker.PayloadSizes)
			var lost sync.Map
			var idleStreams []*h2ws.Conn
			for i := range idle {
				s, err := open()
				if err != nil {
					t.Fatalf("idle stream %d: %v", i, err)
				}
				idleStreams = append(idleStreams, s.(*h2ws.Conn))
				id := testbroker.ClientID("idle")
				cl := pahotest.ConnectOver(t, u, func() (net.Conn, error) { return s, nil }, id, func(err error) { lost.Store(id, err) })
				_ = cl
			}
			victim := idleStreams[0]
			t.Run("transfers", func(t *testing.T) {
				go victim.Reset() // a tab that dies while the others work
				pahotest.RunTransfersOver(t, u, open)
			})
			if got := h.Stats().Accepted; got != streams {
				t.Errorf("accepted %d streams, want %d", got, streams)
			}
			// The reset stream ended; every other stream is still served.
			deadline := time.Now().Add(10 * time.Second)
			for h.Stats().Active != idle-1 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if got := h.Stats().Active; got != idle-1 {
				t.Errorf("%d streams served after the transfers, want the %d idle ones still alive", got, idle-1)
			}
			n := 0
			lost.Range(func(k, v any) bool {
				n++
				return true
			})
			if n != 1 {
				t.Errorf("%d idle clients lost their connection, want 1 (the reset one)", n)
			}
		})
	}
}

// TestHTTP2Refusals: the HTTP/2 handshake follows the same rules as
// HTTP/1.1, with RFC 8441's answers.
func TestHTTP2Refusals(t *testing.T) {
	t.Parallel()
	h := &mqttws.Handler{
		Backend:      mqttws.BackendFunc(func(_ context.Context, c net.Conn) error { _, err := io.Copy(c, c); return err }),
		AllowedHosts: []string{"127.0.0.1"},
		Logger:       slog.New(slog.DiscardHandler),
	}
	u, conf := h2Server(t, h)
	c := dialH2(t, hostOf(t, u), conf)
	cases := []struct {
		name      string
		protocols []string
		header    http.Header
		status    int
	}{
		{
			name:      "ServedWithChosenSubprotocol",
			protocols: []string{"mqttv3.1", "mqtt"},
			status:    http.StatusOK,
		},
		{
			name:      "UnknownSubprotocolGets400",
			protocols: []string{"stomp"},
			status:    http.StatusBadRequest,
		},
		{
			name:      "WrongVersionGets400",
			protocols: []string{"mqtt"},
			header:    http.Header{"Sec-Websocket-Version": {"8"}},
			status:    http.StatusBadRequest,
		},
		{
			name:      "OtherProtocolGets400",
			protocols: []string{"mqtt"},
			header:    http.Header{":protocol": {"webtransport"}},
			status:    http.StatusBadRequest,
		},
		{
			name:      "ForeignOriginGets403",
			protocols: []string{"mqtt"},
			header:    http.Header{"Origin": {"https://evil.example"}},
			status:    http.StatusForbidden,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, resp, err := c.Open(ctx, u, tc.protocols, tc.header)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if s == nil {
				return
			}
			if s.Subprotocol != "mqtt" {
				t.Errorf("subprotocol %q, want mqtt (the server's preference among those offered)", s.Subprotocol)
			}
			msg := []byte{0xc0, 0}
			if _, err := s.Write(msg); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 2)
			if _, err := io.ReadFull(s, got); err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("echo %x %v", got, err)
			}
			_ = s.Close()
		})
	}
}

// echoBackend sends back what it reads.
func echoBackend() mqttws.Backend {
	return mqttws.BackendFunc(func(_ context.Context, c net.Conn) error {
		_, err := io.Copy(c, c)
		return err
	})
}

// openEcho opens a stream on c and checks that it echoes.
func openEcho(t *testing.T, c *h2ws.Client, u string) *h2ws.Conn {
	t.Helper()
	s, err := h2Opener(t, c, u)()
	if err != nil {
		t.Fatal(err)
	}
	expectEcho(t, s.(*h2ws.Conn), []byte("hello"))
	return s.(*h2ws.Conn)
}

func expectEcho(t *testing.T, s *h2ws.Conn, msg []byte) {
	t.Helper()
	if _, err := s.Write(msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadFull(s, got)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("echo %q %v, want %q", got, err, msg)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no echo within 10s")
	}
}

// waitActive waits until h serves want streams.
func waitActive(t *testing.T, h *mqttws.Handler, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for h.Stats().Active != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams served, want %d", h.Stats().Active, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHTTP2HostileStreams: what one stream does to its HTTP/2 connection
// stays on its stream.
func TestHTTP2HostileStreams(t *testing.T) {
	t.Parallel()
	h := &mqttws.Handler{Backend: echoBackend(), Logger: slog.New(slog.DiscardHandler)}
	u, conf := h2Server(t, h)
	c := dialH2(t, hostOf(t, u), conf)
	bystander := openEcho(t, c, u)

	t.Run("ResetInsideAFrame", func(t *testing.T) {
		s := openEcho(t, c, u)
		if err := s.WriteRaw(maskedFrame(make([]byte, 1000))[:300]); err != nil {
			t.Fatal(err)
		}
		s.Reset()
		waitActive(t, h, 1)
		expectEcho(t, bystander, []byte("still here"))
	})

	t.Run("DataBeforeThe200", func(t *testing.T) {
		// The client's first frame is on its way with the request: it is
		// read once the stream is accepted.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, resp, err := c.OpenWithEarlyData(ctx, u, []string{"mqtt"}, maskedFrame([]byte("early")))
		if err != nil || s == nil {
			t.Fatalf("open: %v %v", resp, err)
		}
		got := make([]byte, 5)
		if _, err := io.ReadFull(s, got); err != nil || string(got) != "early" {
			t.Fatalf("echo of the early frame: %q %v", got, err)
		}
		_ = s.Close()
		waitActive(t, h, 1)
	})

	t.Run("PingFlood", func(t *testing.T) {
		s := openEcho(t, c, u)
		ping := maskedControl(0x9, []byte("ping"))
		flood := bytes.Repeat(ping, 10000)
		if err := s.WriteRaw(flood); err != nil {
			t.Fatal(err)
		}
		// The flood is answered (pongs are read and dropped by the client
		// reader) and the bystander is served meanwhile.
		expectEcho(t, bystander, []byte("during the flood"))
		expectEcho(t, s, []byte("after the flood"))
		_ = s.Close()
		waitActive(t, h, 1)
	})

	t.Run("ThousandStreamsOpenedAndReset", func(t *testing.T) {
		before, failedBefore := h.Stats().Accepted, h.Stats().Refused["upgrade_failed"]
		for i := range 1000 {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			s, resp, err := c.Open(ctx, u, []string{"mqtt"}, nil)
			cancel()
			if err != nil || s == nil {
				t.Fatalf("stream %d: %v %v", i, resp, err)
			}
			s.Reset()
		}
		// Every stream is counted, accepted or (reset before the server's
		// 200 was out, as the server sees it) failed, and ends.
		counted := func() uint64 {
			st := h.Stats()
			return st.Accepted - before + st.Refused["upgrade_failed"] - failedBefore
		}
		deadline := time.Now().Add(10 * time.Second)
		for counted() != 1000 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if got := counted(); got != 1000 {
			t.Fatalf("%d streams counted, want 1000 (%+v)", got, h.Stats())
		}
		waitActive(t, h, 1)
		expectEcho(t, bystander, []byte("after a thousand resets"))
	})
}

// maskedFrame encodes a final binary frame as a client sends it.
func maskedFrame(payload []byte) []byte { return maskedControl(0x2, payload) }

// maskedControl encodes a final frame of opcode op as a client sends it.
func maskedControl(op byte, payload []byte) []byte { return h2ws.Frame(op, payload) }

// TestHTTP2Shutdown: Handler.Shutdown closes HTTP/2 streams with 1001 as it
// does TCP connections, and refuses new ones with 503.
func TestHTTP2Shutdown(t *testing.T) {
	t.Parallel()
	h := &mqttws.Handler{Backend: echoBackend(), Logger: slog.New(slog.DiscardHandler)}
	u, conf := h2Server(t, h)
	c := dialH2(t, hostOf(t, u), conf)
	readErrs := make(chan error, 3)
	var streams []*h2ws.Conn
	for range 3 {
		s := openEcho(t, c, u)
		streams = append(streams, s)
		go func() { // a client reads all the time, and answers the close
			_, err := io.ReadAll(s)
			readErrs <- err
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := h.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > mqttws.DefaultCloseTimeout/2 {
		t.Errorf("Shutdown took %v: the close handshake did not complete", d)
	}
	for i := range streams {
		if err := <-readErrs; err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	for i, s := range streams {
		if s.CloseCode != 1001 {
			t.Fatalf("stream %d closed with %d, want 1001", i, s.CloseCode)
		}
	}
	if st := h.Stats(); st.Active != 0 || st.CloseSent[mqttws.CloseGoingAway] != 3 || st.CloseReceived[mqttws.CloseGoingAway] != 3 {
		t.Fatalf("after Shutdown: %+v", st)
	}
	_, resp, err := c.Open(ctx, u, []string{"mqtt"}, nil)
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a stream opened during shutdown: %v %v, want 503", resp, err)
	}
}

// dialH2 opens one HTTP/2 connection to addr for the test.
func dialH2(t testing.TB, addr string, tlsConf *tls.Config) *h2ws.Client {
	t.Helper()
	c, err := h2ws.Dial(addr, tlsConf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestFrameRulesOverHTTP2: the rules of RFC 6455 and MQTT section 6 that
// end a connection (the root package runs the same table over TCP) end an
// HTTP/2 stream with the same close codes, and leave the connection's other
// streams alone.
func TestFrameRulesOverHTTP2(t *testing.T) {
	t.Parallel()
	servers := map[int64]*h2ws.Client{}
	urls := map[int64]string{}
	for _, rule := range testbroker.FrameRules {
		if _, ok := servers[rule.MaxFrameSize]; ok {
			continue
		}
		h := &mqttws.Handler{Backend: echoBackend(), MaxFrameSize: rule.MaxFrameSize, Logger: slog.New(slog.DiscardHandler)}
		u, conf := h2Server(t, h)
		servers[rule.MaxFrameSize], urls[rule.MaxFrameSize] = dialH2(t, hostOf(t, u), conf), u
	}
	for _, rule := range testbroker.FrameRules {
		t.Run(rule.Name, func(t *testing.T) {
			c, u := servers[rule.MaxFrameSize], urls[rule.MaxFrameSize]
			bystander := openEcho(t, c, u)
			s := openEcho(t, c, u)
			if err := s.WriteRaw(rule.Wire()); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := io.Copy(io.Discard, s)
				done <- err
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("reading up to the close: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no close within 10s")
			}
			if got := uint16(s.CloseCode); got != rule.Code {
				t.Fatalf("closed with %d, want %d", got, rule.Code)
			}
			expectEcho(t, bystander, []byte("unaffected"))
			_ = bystander.Close()
		})
	}
}
