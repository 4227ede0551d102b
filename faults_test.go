package mqttws_test

import (
	"context"
	"net"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mqttws/mqttws"
)

// settle waits for goroutines to drop back to at most want, and returns
// the count and the live heap after a GC.
func settle(want int) (goroutines int, heap uint64) {
	deadline := time.Now().Add(testTimeout)
	for {
		runtime.GC()
		goroutines = runtime.NumGoroutine()
		if goroutines <= want || time.Now().After(deadline) {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			return goroutines, ms.HeapAlloc
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestThousandConnectionsDroppedLeaveNothingBehind opens and drops 1,000
// connections, half of them in the middle of a frame, some with a RST, twice:
// goroutines come back to where they were after each round, and the second
// round leaves the heap where the first left it (the first grows what the
// runtime keeps for good, such as goroutine descriptors).
func TestThousandConnectionsDroppedLeaveNothingBehind(t *testing.T) {
	h := &mqttws.Handler{Backend: mqttws.BackendFunc(echo), Logger: discardLogger()}
	url := serve(t, h)
	time.Sleep(50 * time.Millisecond)
	baseG, _ := settle(runtime.NumGoroutine())

	const total = 1000
	var heapAfter [2]uint64
	for round := range 2 {
		dropConnections(t, url, total)
		// The last clients may be gone before the handler tracks their
		// streams: count them in before waiting for none to be active.
		waitAccepted(t, h, uint64(round+1)*total)
		waitActive(t, h, 0)
		g, heap := settle(baseG)
		if g > baseG {
			t.Fatalf("round %d: %d goroutines after 1,000 dropped connections, %d before", round+1, g, baseG)
		}
		heapAfter[round] = heap
	}
	if heapAfter[1] > heapAfter[0]+1<<20 {
		t.Errorf("live heap grew from %d KiB to %d KiB over a second round of 1,000 dropped connections", heapAfter[0]>>10, heapAfter[1]>>10)
	}
	if st := h.Stats(); st.Accepted != 2*total {
		t.Errorf("accepted %d, want %d", st.Accepted, 2*total)
	}
	t.Logf("goroutines %d; heap after round 1: %d KiB, after round 2: %d KiB", baseG, heapAfter[0]>>10, heapAfter[1]>>10)
}

// dropConnections opens total connections, 20 at a time, and drops each:
// half in the middle of a frame, a quarter with a RST.
func dropConnections(t *testing.T, url string, total int) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 20)
	for i := range total {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			d := ws.Dialer{Protocols: []string{"mqtt"}, Timeout: testTimeout}
			conn, _, _, err := d.Dial(context.Background(), url)
			if err != nil {
				t.Errorf("dial %d: %v", i, err)
				return
			}
			f := binaryFrame(make([]byte, 3000)).bytes()
			if i%2 == 0 {
				f = f[:1500]
			}
			_, _ = conn.Write(f)
			if tc, ok := conn.(*net.TCPConn); ok && i%4 == 0 {
				_ = tc.SetLinger(0)
			}
			_ = conn.Close()
		}()
	}
	wg.Wait()
}

// waitAccepted waits until the handler has tracked n streams in all: a
// client sees the 101 before its stream is tracked.
func waitAccepted(t *testing.T, h *mqttws.Handler, n uint64) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for h.Stats().Accepted < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams accepted, want %d", h.Stats().Accepted, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitActive(t *testing.T, h *mqttws.Handler, n int) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for h.Stats().Active != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d active streams, want %d", h.Stats().Active, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSlowHandshakeIsCutByReadHeaderTimeout shows the server setting that
// guards the handshake: net/http reads the request before the handler runs.
func TestSlowHandshakeIsCutByReadHeaderTimeout(t *testing.T) {
	t.Parallel()
	h := &mqttws.Handler{Backend: mqttws.BackendFunc(echo)}
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ReadHeaderTimeout = 200 * time.Millisecond
	srv.Start()
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := "GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
	start := time.Now()
	for i := range req {
		if _, err := conn.Write([]byte{req[i]}); err != nil {
			break // the server gave up: what the test wants
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = conn.SetReadDeadline(time.Now().Add(testTimeout))
	buf := make([]byte, 512)
	n, _ := conn.Read(buf)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("slow handshake held for %v", d)
	}
	if n > 0 && !strings.Contains(string(buf[:n]), "408") && !strings.Contains(string(buf[:n]), "400") {
		t.Fatalf("answer %q", buf[:n])
	}
	if h.Stats().Accepted != 0 {
		t.Fatal("a slow handshake was upgraded")
	}
}

// TestSilentUpgradedClientIsDropped: a client that upgrades and sends
// nothing costs a connection only until FirstDataTimeout.
func TestSilentUpgradedClientIsDropped(t *testing.T) {
	t.Parallel()
	h := &mqttws.Handler{
		Backend:          newRecorderFunc(),
		FirstDataTimeout: 150 * time.Millisecond,
		CloseTimeout:     100 * time.Millisecond,
		Logger:           discardLogger(),
	}
	url := serve(t, h)
	for range 10 {
		d := ws.Dialer{Protocols: []string{"mqtt"}}
		conn, _, _, err := d.Dial(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
	}
	waitAccepted(t, h, 10)
	waitActive(t, h, 0)
	if got := h.Stats().CloseSent[mqttws.ClosePolicyViolation]; got != 10 {
		t.Fatalf("%d closes with 1008, want 10", got)
	}
}
