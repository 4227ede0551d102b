package soak

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/backend/mochi"
	"github.com/mqttws/mqttws/internal/testbroker"
)

// Environment of the child process that runs the clients.
const (
	envURL      = "MQTTWS_SOAK_URL"
	envClients  = "MQTTWS_SOAK_CLIENTS"
	envMessages = "MQTTWS_SOAK_MESSAGES"
)

func TestMain(m *testing.M) {
	if url := os.Getenv(envURL); url != "" {
		clients, _ := strconv.Atoi(os.Getenv(envClients))
		messages, _ := strconv.Atoi(os.Getenv(envMessages))
		os.Exit(runClients(url, clients, messages))
	}
	os.Exit(m.Run())
}

// summary is what the client process reports.
type summary struct {
	Connected int    `json:"connected"` // connected at once, before any exchange
	Received  int    `json:"received"`  // messages received back intact
	Failed    int    `json:"failed"`
	FirstErr  string `json:"first_err"`
}

// runClients connects all clients, then has each publish messages to its own
// topic and read them back, then disconnects them all.
func runClients(url string, clients, messages int) int {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var s summary
	var mu sync.Mutex
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		s.Failed++
		if s.FirstErr == "" {
			s.FirstErr = err.Error()
		}
	}
	conns := make([]*mqttClient, clients)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 100)
	for i := range clients {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dialMQTT(ctx, url, fmt.Sprintf("soak-%d", i))
			if err == nil {
				err = c.subscribe(fmt.Sprintf("soak/%d", i))
			}
			if err != nil {
				fail(fmt.Errorf("client %d: %w", i, err))
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	for _, c := range conns {
		if c != nil {
			s.Connected++
		}
	}
	var received atomic.Int64
	for i, c := range conns {
		if c == nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			topic := fmt.Sprintf("soak/%d", i)
			for j := range messages {
				want := []byte(fmt.Sprintf("client %d message %d", i, j))
				if err := c.write(testbroker.PublishPacket(topic, want)); err != nil {
					fail(err)
					return
				}
				got, err := c.readPublish(topic)
				if err != nil || !bytes.Equal(got, want) {
					fail(fmt.Errorf("client %d message %d: got %q, %v", i, j, got, err))
					return
				}
				received.Add(1)
			}
		}()
	}
	wg.Wait()
	for _, c := range conns {
		if c != nil {
			c.close()
		}
	}
	s.Received = int(received.Load())
	_ = json.NewEncoder(os.Stdout).Encode(s)
	return 0
}

// startBroker runs mochi with mqttws in front, on loopback.
func startBroker(t *testing.T, opts *mqtt.Options, h *mqttws.Handler) (string, *mqtt.Server) {
	t.Helper()
	if opts == nil {
		opts = &mqtt.Options{}
	}
	opts.Logger = slog.New(slog.DiscardHandler)
	broker := mqtt.New(opts)
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
	t.Cleanup(func() { _ = broker.Close() }) // after the handler's (cleanups run last first)
	h.Backend = b
	h.Logger = slog.New(slog.DiscardHandler)
	return serveHandler(t, h), broker
}

// serveHandler serves h on loopback until the test ends, then shuts it
// down, and returns its ws:// URL.
func serveHandler(t *testing.T, h *mqttws.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = h.Shutdown(ctx)
	})
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/mqtt"
}

// rssKiB returns this process's resident memory.
func rssKiB(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// heapKiB returns the live heap; the GCs also empty sync.Pools, which keep
// their contents over one collection.
func heapKiB() int {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int(ms.HeapAlloc >> 10)
}

// raceEnabled is set when the tests run under the race detector.
var raceEnabled bool

// soakClients is how many connections TestTenThousandConnectionsExchangeMessages
// holds at once: 10,000, or 2,000 under the race detector. The detector's
// own memory costs about 250 KiB per connection at the peak of a round and
// more after the second (GORACE's history_size makes no difference), so
// 10,000 took the process to 5.2 GB; 2,000 run the same code paths as
// concurrently for the detector. scripts/test.sh runs this package without
// -race as well, for the 10,000.
func soakClients() int {
	if raceEnabled {
		return 2_000
	}
	return 10_000
}

// TestTenThousandConnectionsExchangeMessages holds 10,000 MQTT connections
// (2,000 under the race detector: see soakClients) through mqttws to mochi
// at once, has each send 5 messages to itself through the broker and checks
// that every one came back. It does so twice: goroutines must return to
// their baseline after each round, and the second round must leave the heap
// where the first left it (the first grows what the runtime and mochi keep
// for good: goroutine descriptors, poll descriptors, map buckets).
func TestTenThousandConnectionsExchangeMessages(t *testing.T) {
	const messages = 5
	clients := soakClients()
	h := &mqttws.Handler{}
	// mochi's queue of packets for each client's writer, as the embedded
	// example sets it: mochi allocates it whole per client (64 KiB of
	// pointers at its default of 8,192, most of the heap here).
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumClientWritesPending = 64
	url, _ := startBroker(t, &mqtt.Options{Capabilities: caps}, h)
	baseG, baseHeap, baseRSS := runtime.NumGoroutine(), heapKiB(), rssKiB(t)
	t.Logf("baseline: %d goroutines, heap %d KiB, RSS %d KiB", baseG, baseHeap, baseRSS)

	var heapAfter [2]int
	for round := range 2 {
		peak := soakRound(t, h, url, clients, messages)
		g := waitGoroutines(baseG)
		heapAfter[round] = heapKiB()
		if g > baseG {
			t.Fatalf("round %d: %d goroutines after the clients left, %d before", round+1, g, baseG)
		}
		t.Logf("round %d: %d connections at once, %d messages back; at the peak heap %d KiB (%.1f KiB/conn), RSS %d KiB (%.1f KiB/conn); after: %d goroutines, heap %d KiB",
			round+1, peak.conns, clients*messages,
			peak.heap, float64(peak.heap-baseHeap)/float64(clients), peak.rss, float64(peak.rss-baseRSS)/float64(clients),
			g, heapAfter[round])
	}
	if heapAfter[1] > heapAfter[0]+2<<10 {
		t.Errorf("live heap grew from %d KiB to %d KiB over a second round of %d connections", heapAfter[0], heapAfter[1], clients)
	}
	st := h.Stats()
	t.Logf("stats: accepted %d, bytes in %d out %d, frames in %d out %d, close sent %v received %v",
		st.Accepted, st.BytesIn, st.BytesOut, st.FramesIn, st.FramesOut, st.CloseSent, st.CloseReceived)
}

// peakSample is the server at its most loaded.
type peakSample struct {
	conns, heap, rss int
}

// soakRound runs the clients in a child process and checks their report.
func soakRound(t *testing.T, h *mqttws.Handler, url string, clients, messages int) peakSample {
	t.Helper()
	var peak peakSample
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if n := h.Stats().Active; n > peak.conns {
				peak.conns = n
				if n == clients {
					peak.heap, peak.rss = heapKiB(), rssKiB(t)
				}
			}
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envURL+"="+url, envClients+"="+strconv.Itoa(clients), envMessages+"="+strconv.Itoa(messages))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	close(stop)
	<-sampled
	if err != nil {
		t.Fatalf("client process: %v\n%s", err, out)
	}
	var s summary
	if err := json.Unmarshal(out, &s); err != nil {
		t.Fatalf("client process said %q: %v", out, err)
	}
	if s.Connected != clients || s.Received != clients*messages || s.Failed != 0 {
		t.Fatalf("connected %d of %d, received %d of %d messages, %d failures (first: %s)",
			s.Connected, clients, s.Received, clients*messages, s.Failed, s.FirstErr)
	}
	if peak.conns != clients {
		t.Fatalf("at most %d connections at once, want %d", peak.conns, clients)
	}
	deadline := time.Now().Add(time.Minute)
	for h.Stats().Active > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := h.Stats().Active; n != 0 {
		t.Fatalf("%d streams still active after all clients left", n)
	}
	return peak
}

// waitGoroutines waits up to a minute for the goroutine count to fall to
// want, and returns it.
func waitGoroutines(want int) int {
	deadline := time.Now().Add(time.Minute)
	for runtime.NumGoroutine() > want && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	return runtime.NumGoroutine()
}
