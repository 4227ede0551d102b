package options_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqttws/mqttws/examples/internal/exampletest"
	"github.com/mqttws/mqttws/examples/internal/options"
	"github.com/mqttws/mqttws/internal/testbroker"
)

func TestHandshakesDuringReloadsAllSucceed(t *testing.T) {
	files, _ := exampletest.NewCertFiles(t)
	sv := serve(t, options.Server{TLSCert: files.Cert, TLSKey: files.Key, TLSPoll: 5 * time.Millisecond})
	certs := make([]*testbroker.Cert, 5)
	for i := range certs {
		certs[i] = testbroker.SelfSignedCert(t)
		files.Roots.AddCert(certs[i].Certificate.Leaf)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var handshakes int
	var failures []error
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := exampletest.ServedSerial(sv.addr, files.Roots)
				mu.Lock()
				handshakes++
				if err != nil {
					failures = append(failures, err)
				}
				mu.Unlock()
			}
		})
	}
	for _, c := range certs {
		files.Install(t, c)
		exampletest.WaitServedSerial(t, sv.addr, files.Roots, exampletest.Serial(c), 5*time.Second)
	}
	close(stop)
	wg.Wait()
	t.Logf("%d handshakes during %d reloads", handshakes, len(certs))
	if len(failures) > 0 {
		t.Errorf("%d of %d handshakes failed during reloads, the first: %v", len(failures), handshakes, failures[0])
	}
}

func TestWebSocketOverTLSOutlivesTheHTTPServerTimeouts(t *testing.T) {
	const timeout = 200 * time.Millisecond
	files, _ := exampletest.NewCertFiles(t)
	sv := serve(t, options.Server{TLSCert: files.Cert, TLSKey: files.Key, Timeouts: options.Timeouts{
		ReadHeader: timeout,
		Read:       timeout,
		Write:      timeout,
		Idle:       timeout,
	}})
	c := exampletest.DialWSS(t, "wss://"+sv.addr+"/mqtt", files.Roots)
	echo := func(msg string) {
		t.Helper()
		if err := c.Send([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		if got, err := c.Receive(len(msg)); err != nil || string(got) != msg {
			t.Fatalf("echo of %q: %q, %v", msg, got, err)
		}
	}
	echo("first")
	time.Sleep(8 * timeout) // well past ReadTimeout, WriteTimeout and IdleTimeout
	echo("after the timeouts")
}

func TestFailedTLSHandshakesAreLoggedOncePerTenSeconds(t *testing.T) {
	files, _ := exampletest.NewCertFiles(t)
	sv := serve(t, options.Server{TLSCert: files.Cert, TLSKey: files.Key})
	const attempts = 20
	for range attempts {
		// Plain HTTP on the TLS port: a handshake that fails.
		resp, err := http.Get("http://" + sv.addr + "/healthz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(sv.log.String(), "TLS handshake error") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if n := strings.Count(sv.log.String(), "TLS handshake error"); n != 1 {
		t.Errorf("%d failed handshakes: %d log lines about them, want 1:\n%s", attempts, n, sv.log.String())
	}
}

func TestReadinessIsCheckedAtMostOncePerSecond(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	sv := serveWith(t, options.Server{}, func(ctx context.Context) error {
		mu.Lock()
		calls++
		mu.Unlock()
		if _, ok := ctx.Deadline(); !ok {
			return fmt.Errorf("the check has no deadline")
		}
		return &options.Unready{Reason: "no broker node reachable", Err: fmt.Errorf("dial tcp 10.9.8.7:1883: connection refused")}
	})
	const probes = 50
	var wg sync.WaitGroup
	answers := make(chan string, probes)
	for range probes {
		wg.Go(func() {
			resp, err := http.Get("http://" + sv.addr + options.ReadyPath)
			if err != nil {
				answers <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			answers <- fmt.Sprintf("%d %s", resp.StatusCode, b)
		})
	}
	wg.Wait()
	close(answers)
	for a := range answers {
		if a != "503 not ready: no broker node reachable\n" {
			t.Errorf("GET %s: %q, want 503 with the reason and no details", options.ReadyPath, a)
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 1 {
		t.Errorf("%d probes at once ran the check %d times, want 1", probes, calls)
	}
	if log := sv.log.String(); strings.Count(log, "10.9.8.7") != 1 {
		t.Errorf("the details of the failure should be logged once:\n%s", log)
	}
}

func TestBodiesAreRefusedOverHTTP1AndLeftToTheStreamOverHTTP2(t *testing.T) {
	files, _ := exampletest.NewCertFiles(t)
	sv := serve(t, options.Server{TLSCert: files.Cert, TLSKey: files.Key})
	tests := []struct {
		name  string
		proto string
		want  int
	}{
		{
			name:  "HTTP/1.1: refused at once",
			proto: "HTTP/1.1",
			want:  http.StatusRequestEntityTooLarge,
		},
		{
			// A WebSocket over HTTP/2 is a request whose body (its frames)
			// has no length: the handler must get it.
			name:  "HTTP/2: passed to the handler",
			proto: "HTTP/2.0",
			want:  http.StatusNotFound, // no route here
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := exampletest.HTTPSClient(t, files.Roots)
			if tc.proto == "HTTP/1.1" {
				tr := client.Transport.(*http.Transport)
				tr.ForceAttemptHTTP2 = false
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			resp, err := client.Post("https://"+sv.addr+"/nothing-here", "text/plain", strings.NewReader("a body"))
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.Proto != tc.proto || resp.StatusCode != tc.want {
				t.Errorf("POST with a body: %s %d, want %s %d", resp.Proto, resp.StatusCode, tc.proto, tc.want)
			}
		})
	}
}
