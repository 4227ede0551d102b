package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mqttws/mqttws/examples/internal/exampletest"
	"github.com/mqttws/mqttws/internal/pahotest"
	"github.com/mqttws/mqttws/internal/testbroker"
)

func TestDNSRebindingPageIsRefused(t *testing.T) {
	exampletest.ExpectDNSRebindingRefused(t, start(t))
}

func TestAllowHostServesANamedHost(t *testing.T) {
	p := start(t, "-allow-host", "app.example.com")
	host := "app.example.com:" + p.Port()
	status, body, err := exampletest.Handshake{From: "127.0.0.1", Addr: p.Addr, Path: "/mqtt", Host: host, Origin: "http://" + host}.Status()
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusSwitchingProtocols {
		t.Errorf("with -allow-host app.example.com, Host %s: %d %q, want 101", host, status, body)
	}
}

func TestOneAddressCannotKeepAnotherOut(t *testing.T) {
	p := start(t) // -max-conns-per-addr 256 by default
	const opened = 300
	open, refused := exampletest.OpenIdle(t, "127.0.0.2", p.Addr, opened)
	if len(open) != 256 {
		t.Errorf("127.0.0.2 opened %d idle connections: %d held, %d refused; want 256 held", opened, len(open), refused)
	}
	if fds := p.OpenFiles(t); fds > 256+32 {
		t.Errorf("the example has %d files open, with 256 connections held", fds)
	}
	status, body, err := exampletest.Handshake{From: "127.0.0.3", Addr: p.Addr, Path: "/mqtt"}.Status()
	if err != nil || status != http.StatusSwitchingProtocols {
		t.Errorf("127.0.0.3's handshake while 127.0.0.2 holds its cap: %d %q %v, want 101", status, body, err)
	}
}

func TestSlowPostIsAnsweredAndClosedAtOnce(t *testing.T) {
	p := start(t)
	c := exampletest.SlowPost(t, "127.0.0.2", p.Addr)
	status, _, err := exampletest.Roundtrip(c, bufio.NewReader(c), "")
	if err != nil || status != http.StatusRequestEntityTooLarge {
		t.Fatalf("a POST whose body never comes: %d %v, want 413 at once", status, err)
	}
	if _, err := exampletest.WaitClosed(c, time.Second); err != nil {
		t.Errorf("after its 413: %v", err)
	}
}

func TestShutdownWithSlowClientsOpenIsQuickAndClean(t *testing.T) {
	p := start(t)
	for range 20 {
		exampletest.SlowPost(t, "127.0.0.2", p.Addr)
	}
	if _, refused := exampletest.OpenIdle(t, "127.0.0.3", p.Addr, 20); refused > 0 {
		t.Fatalf("%d of 20 requests not answered", refused)
	}
	pahotest.Connect(t, "ws://"+p.Addr+"/mqtt", testbroker.ClientID("stays"), nil)
	time.Sleep(50 * time.Millisecond) // the POSTs are read

	took, code := p.Terminate(t)
	t.Logf("exit status %d, %v after SIGTERM", code, took.Round(time.Millisecond))
	if code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0; log:\n%s", code, p.Stderr())
	}
	if took > 500*time.Millisecond {
		t.Errorf("%v from SIGTERM to exit with 20 slow POSTs and 20 idle connections open, want about 0.1s", took)
	}
}

func TestShutdownLogsNoPayloads(t *testing.T) {
	p := start(t)
	url := "ws://" + p.Addr + "/mqtt"
	const publishers = 20
	payload := bytes.Repeat([]byte("payload!"), 512)
	var wg sync.WaitGroup
	var published atomic.Int64
	stop := make(chan struct{})
	for i := range publishers {
		c := testbroker.ConnectRaw(t, url, fmt.Sprintf("loud-%d", i))
		closing := make(chan []byte, 1)
		go func() {
			for {
				f, err := c.ReadFrame(10 * time.Second)
				if err != nil {
					return
				}
				if f.Header.OpCode == ws.OpClose {
					closing <- f.Payload
					return
				}
			}
		}()
		wg.Go(func() {
			// QoS 1 PUBLISH packets, each with packet id 1.
			pub := testbroker.Packet(0x32, append([]byte{0, 1, 't', 0, 1}, payload...))
			for {
				select {
				case <-stop:
					return
				case body := <-closing:
					_ = c.WriteFrame(ws.NewCloseFrame(body))
					return
				default:
				}
				if c.WriteFrame(ws.NewBinaryFrame(pub)) != nil {
					return
				}
				published.Add(1)
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	took, code := p.Terminate(t)
	close(stop)
	wg.Wait()
	log := p.Stderr()
	t.Logf("%d QoS 1 messages published, exit status %d %v after SIGTERM, %d bytes of log", published.Load(), code, took.Round(time.Millisecond), len(log))
	if strings.Contains(log, "pk=") || strings.Contains(log, "payload!") {
		t.Errorf("the log holds packets:\n%.2000s", log)
	}
	if code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
}

func TestMetricsAreOnlyOnTheMetricsListener(t *testing.T) {
	p := start(t, "-metrics-listen", "127.0.0.1:0")
	resp, err := http.Get("http://" + p.Addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /metrics on -listen: %d, want 404", resp.StatusCode)
	}
	url := exampletest.MetricsURL(t, p)
	resp, err = http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET %s: %d, want 200", url, resp.StatusCode)
	}
}
