package options_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/examples/internal/exampletest"
	"github.com/mqttws/mqttws/examples/internal/options"
	"github.com/mqttws/mqttws/internal/testbroker"
)

// served is an app run by options.Server.Serve: an mqttws.Handler at /mqtt
// whose backend echoes what it reads.
type served struct {
	addr string // host:port of the public listener
	log  *testbroker.LockedBuffer
	stop func() (time.Duration, error)
}

// serve runs s.Serve until the test ends, or until stop is called.
func serve(t *testing.T, s options.Server) *served {
	t.Helper()
	return serveWith(t, s, nil)
}

// serveWith is serve with readiness as the app's Readiness.
func serveWith(t *testing.T, s options.Server, readiness func(context.Context) error) *served {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log := &testbroker.LockedBuffer{}
	h := &mqttws.Handler{
		Backend: mqttws.BackendFunc(func(_ context.Context, c net.Conn) error {
			_, err := io.Copy(c, c)
			return err
		}),
		Logger:       slog.New(slog.NewTextHandler(log, nil)),
		AllowedHosts: []string{"127.0.0.1", "localhost"},
	}
	mux := http.NewServeMux()
	mux.Handle("/mqtt", h)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan string, 1)
	go func() {
		done <- s.Serve(ctx, ln, options.App{Handler: mux, WS: h, Log: h.Logger, Ready: func(host string) { ready <- host }, Readiness: readiness})
	}()
	sv := &served{log: log}
	select {
	case sv.addr = <-ready:
	case err := <-done:
		t.Fatalf("Serve: %v", err)
	}
	var once sync.Once
	var took time.Duration
	var serveErr error
	sv.stop = func() (time.Duration, error) {
		once.Do(func() {
			start := time.Now()
			cancel()
			select {
			case serveErr = <-done:
				took = time.Since(start)
			case <-time.After(exampletest.StopTimeout):
				t.Fatalf("Serve did not return within %v of the cancel", exampletest.StopTimeout)
			}
		})
		return took, serveErr
	}
	t.Cleanup(func() {
		_, _ = sv.stop()
		if t.Failed() {
			t.Logf("log:\n%s", log.String())
		}
	})
	return sv
}

func TestSlowPostIsAnsweredAndClosedAtOnce(t *testing.T) {
	sv := serve(t, options.Server{}) // ReadTimeout 15s
	c := exampletest.SlowPost(t, "127.0.0.2", sv.addr)
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("a POST whose body never comes got no answer within 1s: %v", err)
	}
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a POST whose body never comes got %d, want 413", resp.StatusCode)
	}
	if took, err := exampletest.WaitClosed(c, time.Second); err != nil {
		t.Errorf("after its 413 (default ReadTimeout 15s): %v", err)
	} else {
		t.Logf("answered 413 and closed within %v", took.Round(time.Millisecond))
	}
}

func TestIdleKeepAliveConnectionIsClosedAfterIdleTimeout(t *testing.T) {
	const idle = 300 * time.Millisecond
	sv := serve(t, options.Server{Timeouts: options.Timeouts{Idle: idle}})
	open, refused := exampletest.OpenIdle(t, "127.0.0.2", sv.addr, 1)
	if refused > 0 {
		t.Fatal("the request was not answered")
	}
	took, err := exampletest.WaitClosed(open[0], 10*idle)
	if err != nil {
		t.Fatalf("IdleTimeout %v: %v", idle, err)
	}
	if took < idle/2 {
		t.Errorf("closed %v after its answer, before IdleTimeout %v", took, idle)
	}
}

func TestHugeUnfinishedHeaderIsCutOff(t *testing.T) {
	sv := serve(t, options.Server{}) // ReadHeaderTimeout 10s
	c := exampletest.Dial(t, "127.0.0.2", sv.addr)
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n", sv.addr)
	// 1 MB of header fields, never finished: within net/http's default
	// MaxHeaderBytes (1 MB plus 4 KiB), the connection would stay open
	// until ReadHeaderTimeout.
	line := "X-Pad: " + strings.Repeat("a", 1000) + "\r\n"
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	for sent := 0; sent < 1<<20; sent += len(line) {
		if _, err := io.WriteString(c, line); err != nil {
			break // cut off
		}
	}
	if _, err := exampletest.WaitClosed(c, 5*time.Second); err != nil {
		t.Fatalf("1 MB of unfinished header (MaxHeaderBytes %d): %v", options.MaxHeaderBytes, err)
	}
}

func TestWebSocketOutlivesTheHTTPServerTimeouts(t *testing.T) {
	const timeout = 200 * time.Millisecond
	sv := serve(t, options.Server{Timeouts: options.Timeouts{
		ReadHeader: timeout,
		Read:       timeout,
		Write:      timeout,
		Idle:       timeout,
	}})
	c := testbroker.DialWS(t, "ws://"+sv.addr+"/mqtt")
	echo := func(msg string) {
		t.Helper()
		if err := c.WriteFrame(ws.NewBinaryFrame([]byte(msg))); err != nil {
			t.Fatalf("write %q: %v", msg, err)
		}
		got, _, err := c.ReadData(len(msg), 5*time.Second)
		if err != nil || string(got) != msg {
			t.Fatalf("echo of %q: %q, %v", msg, got, err)
		}
	}
	echo("first")
	time.Sleep(8 * timeout) // well past ReadTimeout, WriteTimeout and IdleTimeout
	echo("after the timeouts")
	time.Sleep(2 * timeout)
	echo("still")
}

func TestServeStopsAtOnceWithSlowClientsOpen(t *testing.T) {
	sv := serve(t, options.Server{})
	for range 10 {
		exampletest.SlowPost(t, "127.0.0.2", sv.addr)
	}
	if _, refused := exampletest.OpenIdle(t, "127.0.0.3", sv.addr, 10); refused > 0 {
		t.Fatalf("%d of 10 requests not answered", refused)
	}
	c := testbroker.DialWS(t, "ws://"+sv.addr+"/mqtt")
	closed := make(chan error, 1)
	go func() {
		cf, err := c.ReadClose(5 * time.Second) // answers the close frame
		if err == nil && cf.Code != mqttws.CloseGoingAway {
			err = fmt.Errorf("close code %d, want 1001", cf.Code)
		}
		closed <- err
	}()
	time.Sleep(50 * time.Millisecond) // the POSTs are read

	took, err := sv.stop()
	if err != nil {
		t.Errorf("Serve returned %v, want nil", err)
	}
	if took > 500*time.Millisecond {
		t.Errorf("Serve took %v to stop with slow POSTs and idle connections open, want about 0.1s", took)
	}
	t.Logf("stopped in %v", took.Round(time.Millisecond))
	if err := <-closed; err != nil {
		t.Errorf("the WebSocket client: %v", err)
	}
}

func TestServeStopsWithinTheDrainWithSilentClientsOpen(t *testing.T) {
	const drain = 300 * time.Millisecond
	sv := serve(t, options.Server{Timeouts: options.Timeouts{Drain: drain}})
	for range 5 {
		exampletest.Dial(t, "127.0.0.2", sv.addr) // sends nothing
	}
	for range 5 {
		c := exampletest.Dial(t, "127.0.0.3", sv.addr)
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n", sv.addr) // never finished
	}
	time.Sleep(50 * time.Millisecond)

	took, err := sv.stop()
	if err != nil {
		t.Errorf("Serve returned %v, want nil", err)
	}
	if took > drain+500*time.Millisecond {
		t.Errorf("Serve took %v to stop with silent clients open, want about the drain, %v", took, drain)
	}
}

// metricsURL finds the URL of the metrics in a log.
var metricsURL = regexp.MustCompile(`url=(http://127\.0\.0\.1:[0-9]+/metrics)`)

func TestMetricsAreServedOnlyOnTheirOwnListener(t *testing.T) {
	sv := serve(t, options.Server{MetricsListen: "127.0.0.1:0"})
	m := metricsURL.FindStringSubmatch(sv.log.String())
	if m == nil {
		t.Fatalf("no metrics URL logged:\n%s", sv.log.String())
	}
	resp, err := http.Get(m[1])
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "mqttws_connections_active") {
		t.Errorf("GET %s: %d, want 200 with mqttws_connections_active", m[1], resp.StatusCode)
	}

	req, err := http.NewRequest(http.MethodGet, m[1], nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "rebind.attacker.example"
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET %s with Host %s (DNS rebinding): %d, want 403", m[1], req.Host, resp.StatusCode)
	}

	resp, err = http.Get("http://" + sv.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /metrics on the public listener: %d, want 404", resp.StatusCode)
	}
}
