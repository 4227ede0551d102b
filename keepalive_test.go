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
	rec := newRecorder()
	c := dial(t, serve(t, &mqttws.Handler{
		Backend:      rec,
		PingInterval: 100 * time.Millisecond,
		PongTimeout:  100 * time.Millisecond,
		Logger:       discardLogger(),
	}))
	payload := make([]byte, 1200)
	for i := range payload {
		payload[i] = byte(rand.N(256))
	}
	// 1,200 bytes, 30 at a time every 25 ms: 1 s, five times the
	// PingInterval plus the PongTimeout, inside one frame.
	wire := binaryFrame(payload).bytes()
	headerLen := len(wire) - len(payload)
	c.sendRaw(wire[:headerLen])
	for rest := wire[headerLen:]; len(rest) > 0; {
		n := min(30, len(rest))
		time.Sleep(25 * time.Millisecond)
		c.sendRaw(rest[:n])
		rest = rest[n:]
	}
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
	time.Sleep(interval / 10)
	c.send(binaryFrame([]byte{0xc0, 0})) // PINGREQ, echoed back
	last := time.Now()
	if got := c.readData(2); !bytes.Equal(got, []byte{0xc0, 0}) {
		t.Fatalf("echo %x", got)
	}
	h, _, err := c.readFrame()
	if err != nil || h.OpCode != ws.OpPing {
		t.Fatalf("got %v %v, want a ping", h.OpCode, err)
	}
	if d := time.Since(last); d < interval || d > interval*3/2 {
		t.Fatalf("ping %v after the last traffic, want %v", d, interval)
	}
	c.expectEOF()
	if d := time.Since(last); d < 2*interval || d > 2*interval+interval/2 {
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
