package mqttws_test

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mqttws/mqttws"
)

// TestChurnWithTinyTimeoutsAndRandomDeaths runs connections that die at
// random points (a clean close, a FIN, a RST, silence) against a handler
// whose timeouts are a few milliseconds, so that every close path races
// with every other: pings, pong and first-data timeouts, write timeouts,
// backend errors. Under -race it guards the stream's shared state; the
// handler must end every connection. MQTTWS_CHURN sets how long it runs
// (default 2s; the race it was written for showed once per 200,000
// connections, about a minute).
//
// Not parallel: it keeps both cores busy for its whole run, and tests with
// timeouts of 100 ms running beside it (TestClientSendingDataNeedsNoPong,
// TestSlowLargeFrameIsNotDroppedAsDead) then saw their client or backend
// stalled long enough to be dropped.
func TestChurnWithTinyTimeoutsAndRandomDeaths(t *testing.T) {
	duration := 2 * time.Second
	if v := os.Getenv("MQTTWS_CHURN"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("MQTTWS_CHURN=%q: %v", v, err)
		}
		duration = d
	}
	h := &mqttws.Handler{
		Backend: mqttws.BackendFunc(func(ctx context.Context, c net.Conn) error {
			buf := make([]byte, 64)
			for {
				n, err := c.Read(buf)
				if err != nil {
					return err
				}
				if _, err := c.Write(buf[:n]); err != nil {
					return err
				}
				if buf[0] == 0xee {
					return errors.New("backend gives up")
				}
			}
		}),
		PingInterval:     time.Duration(1+rand.N(3)) * time.Millisecond,
		PongTimeout:      time.Millisecond,
		WriteTimeout:     3 * time.Millisecond,
		FirstDataTimeout: 5 * time.Millisecond,
		CloseTimeout:     2 * time.Millisecond,
		Logger:           discardLogger(),
	}
	url := serve(t, h)
	var dialed atomic.Int64
	stop := time.Now().Add(duration)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for time.Now().Before(stop) {
				churnOnce(url)
				dialed.Add(1)
			}
		})
	}
	wg.Wait()
	// Every connection ends on its own: the timeouts see to it.
	deadline := time.Now().Add(testTimeout)
	for h.Stats().Active > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still served after the churn", h.Stats().Active)
		}
		time.Sleep(5 * time.Millisecond)
	}
	st := h.Stats()
	if st.Accepted == 0 || int64(st.Accepted) > dialed.Load() {
		t.Fatalf("accepted %d of %d dialed", st.Accepted, dialed.Load())
	}
	t.Logf("%d connections in %v, close codes sent %v", st.Accepted, duration, st.CloseSent)
}

// churnOnce opens one connection, does a little, and dies one of several
// ways.
func churnOnce(url string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn, _, _, err := ws.Dialer{Protocols: []string{"mqtt"}}.Dial(ctx, url)
	if err != nil {
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	for range rand.N(4) {
		payload := []byte{0x30, byte(rand.N(256)), byte(rand.N(256))}
		if rand.N(10) == 0 {
			payload[0] = 0xee // the backend returns an error
		}
		if _, err := conn.Write(binaryFrame(payload).bytes()); err != nil {
			return
		}
		if rand.N(3) == 0 {
			time.Sleep(time.Duration(rand.N(3)) * time.Millisecond)
		}
	}
	switch rand.N(5) {
	case 0: // a clean close
		_, _ = conn.Write(frame{op: ws.OpClose, payload: closeBody(1000, "")}.bytes())
		_, _ = io.Copy(io.Discard, conn)
	case 1: // a RST
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
	case 2: // silence until the server gives up
		_, _ = io.Copy(io.Discard, conn)
	case 3: // half a frame, then a FIN
		_, _ = conn.Write(binaryFrame(make([]byte, 50)).bytes()[:20])
	default: // a FIN at once
	}
}
