package mqttws_test

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mqttws/mqttws"
)

// TestSlowLargeFrameIsNotDroppedAsDead: a client cannot answer a ping in
// the middle of a frame, so payload bytes arriving count as life.
func TestSlowLargeFrameIsNotDroppedAsDead(t *testing.T) {
	t.Parallel()
	const interval = 250 * time.Millisecond
	rec := newRecorder()
	c := dial(t, serve(t, &mqttws.Handler{
		Backend:      rec,
		PingInterval: interval,
		PongTimeout:  interval,
		Logger:       discardLogger(),
	}))
	payload := make([]byte, 4000)
	for i := range payload {
		payload[i] = byte(rand.N(256))
	}
	// 20 bytes every 25 ms for 1.5 s, three times the PingInterval plus the
	// PongTimeout, inside one frame; then the rest of it. The margin is for
	// a loaded machine, where a sleeping goroutine may wake 100 ms late or
	// more: with timeouts of 100 ms this failed there now and then.
	wire := binaryFrame(payload).bytes()
	headerLen := len(wire) - len(payload)
	c.sendRaw(wire[:headerLen])
	rest := wire[headerLen:]
	for start := time.Now(); time.Since(start) < 6*interval; {
		n := min(20, len(rest))
		time.Sleep(25 * time.Millisecond)
		c.sendRaw(rest[:n])
		rest = rest[n:]
	}
	c.sendRaw(rest)
	c.send(frame{op: ws.OpClose, payload: closeBody(1000, "")})
	got, _ := rec.wait(t)
	if !bytes.Equal(got, payload) {
		t.Fatalf("backend read %d bytes, want the %d sent", len(got), len(payload))
	}
	c.expectClose(mqttws.CloseNormal)
}

// TestPingFollowsLastTrafficByPingInterval: the first ping comes
// PingInterval after the last traffic, not up to twice that, and a client
// that then stays silent is dropped PingInterval plus PongTimeout after it
// last sent anything.
func TestPingFollowsLastTrafficByPingInterval(t *testing.T) {
	t.Parallel()
	const interval = time.Second
	c := dial(t, serve(t, &mqttws.Handler{
		Backend:      mqttws.BackendFunc(echo),
		PingInterval: interval,
		PongTimeout:  interval,
		Logger:       discardLogger(),
	}))
	time.Sleep(interval / 20)
	// Taken before sending: the server may read the frame before the
	// client's Write returns.
	last := time.Now()
	c.send(binaryFrame([]byte{0xc0, 0})) // PINGREQ, echoed back
	if got := c.readData(2); !bytes.Equal(got, []byte{0xc0, 0}) {
		t.Fatalf("echo %x", got)
	}
	h, _, err := c.readFrame()
	if err != nil || h.OpCode != ws.OpPing {
		t.Fatalf("got %v %v, want a ping", h.OpCode, err)
	}
	// Pings on a fixed tick from the upgrade came about 1.95 s after this
	// traffic, and the drop 2.95 s after it. The upper bounds leave 0.7 s
	// for a loaded machine, where timers fire late (1.63 s was seen against
	// a bound of 1.5 s).
	if d := time.Since(last); d < interval || d > interval*17/10 {
		t.Fatalf("ping %v after the last traffic, want %v", d, interval)
	}
	c.expectEOF()
	if d := time.Since(last); d < 2*interval || d > 2*interval+interval*7/10 {
		t.Fatalf("dropped %v after the last traffic, want %v", d, 2*interval)
	}
}

// TestEmptyFrameIsNoFirstData: FirstDataTimeout wants MQTT bytes, not
// frames: a client that sends only empty binary frames is closed with 1008.
func TestEmptyFrameIsNoFirstData(t *testing.T) {
	t.Parallel()
	c := dial(t, serve(t, &mqttws.Handler{
		Backend:          newRecorder(),
		FirstDataTimeout: 200 * time.Millisecond,
		Logger:           discardLogger(),
	}))
	c.send(binaryFrame(nil), binaryFrame(nil))
	start := time.Now()
	c.expectClose(mqttws.ClosePolicyViolation)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("closed after %v", d)
	}
}
