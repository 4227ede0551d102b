package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mqttws/mqttws/examples/internal/exampletest"
	"github.com/mqttws/mqttws/internal/testbroker"
)

func TestDNSRebindingPageIsRefused(t *testing.T) {
	exampletest.ExpectDNSRebindingRefused(t, start(t))
}

func TestOneAddressCannotKeepAnotherOut(t *testing.T) {
	p := start(t, "-max-conns-per-addr", "20")
	const opened = 100
	open, refused := exampletest.OpenIdle(t, "127.0.0.2", p.Addr, opened)
	if len(open) != 20 {
		t.Errorf("127.0.0.2 opened %d idle connections: %d held, %d refused; want 20 held", opened, len(open), refused)
	}
	status, body, err := exampletest.Handshake{From: "127.0.0.3", Addr: p.Addr, Path: "/mqtt"}.Status()
	if err != nil || status != http.StatusSwitchingProtocols {
		t.Errorf("127.0.0.3's handshake while 127.0.0.2 holds its cap: %d %q %v, want 101", status, body, err)
	}
}

func TestStreamsPerAddressAreCapped(t *testing.T) {
	p := start(t, "-max-streams-per-addr", "2")
	url := "ws://" + p.Addr + "/mqtt"
	testbroker.DialWS(t, url)
	testbroker.DialWS(t, url)
	status, _, err := exampletest.Handshake{From: "127.0.0.1", Addr: p.Addr, Path: "/mqtt"}.Status()
	if err != nil || status != http.StatusTooManyRequests {
		t.Errorf("a third WebSocket from one address with -max-streams-per-addr 2: %d %v, want 429", status, err)
	}
	status, _, err = exampletest.Handshake{From: "127.0.0.2", Addr: p.Addr, Path: "/mqtt"}.Status()
	if err != nil || status != http.StatusSwitchingProtocols {
		t.Errorf("a WebSocket from another address: %d %v, want 101", status, err)
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
	c := testbroker.DialWS(t, "ws://"+p.Addr+"/mqtt")
	if err := c.WriteFrame(ws.NewBinaryFrame(testbroker.ConnectPacket("stays", 60))); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = c.ReadClose(5 * time.Second) }() // answers the close frame
	time.Sleep(50 * time.Millisecond)                   // the POSTs are read

	took, code := p.Terminate(t)
	t.Logf("exit status %d, %v after SIGTERM", code, took.Round(time.Millisecond))
	if code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0; log:\n%s", code, p.Stderr())
	}
	if took > 500*time.Millisecond {
		t.Errorf("%v from SIGTERM to exit with 20 slow POSTs and 20 idle connections open, want about 0.1s", took)
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
