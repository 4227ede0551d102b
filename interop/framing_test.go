package interop

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/gobwas/ws"

	"github.com/mqttws/mqttws/internal/pahotest"
	"github.com/mqttws/mqttws/internal/testbroker"
)

// framing cuts a client's MQTT byte stream into WebSocket frames. MQTT over
// WebSocket leaves the cut to the client (MQTT-6.0.0-2: a frame may carry
// part of a packet or several), and brokers have broken on both extremes.
type framing struct {
	name string
	// frames cuts packets, sent in this order, into data frames.
	frames func(packets [][]byte) []ws.Frame
	// pingEvery is how many data frames go between two pings.
	pingEvery int
}

var framings = []framing{
	{
		name:      "EveryByteIsAMessageOfItsOwn",
		frames:    oneByteMessages,
		pingEvery: 50,
	},
	{
		name:      "EveryPacketIsAMessageOf1ByteFragmentsWithPingsAmongThem",
		frames:    oneByteFragments,
		pingEvery: 50,
	},
	{
		name:      "EveryFrameCarriesManyPacketsAndPartOfTheNext",
		frames:    packed(4),
		pingEvery: 1,
	},
}

// oneByteMessages sends every byte as a binary message of its own.
func oneByteMessages(packets [][]byte) []ws.Frame {
	var out []ws.Frame
	for _, p := range packets {
		for i := range p {
			out = append(out, ws.NewBinaryFrame(p[i:i+1]))
		}
	}
	return out
}

// oneByteFragments sends every packet as one binary message fragmented
// into 1-byte frames.
func oneByteFragments(packets [][]byte) []ws.Frame {
	var out []ws.Frame
	for _, p := range packets {
		for i := range p {
			op := ws.OpContinuation
			if i == 0 {
				op = ws.OpBinary
			}
			out = append(out, ws.NewFrame(op, i == len(p)-1, p[i:i+1]))
		}
	}
	return out
}

// packed returns a framing that puts n whole packets and the first half of
// the next one in each frame; the next frame starts with the other half.
func packed(n int) func([][]byte) []ws.Frame {
	return func(packets [][]byte) []ws.Frame {
		var out []ws.Frame
		var cur []byte
		whole := 0
		for _, p := range packets {
			if whole < n {
				cur = append(cur, p...)
				whole++
				continue
			}
			half := len(p) / 2
			cur = append(cur, p[:half]...)
			out = append(out, ws.NewBinaryFrame(cur))
			cur = append([]byte(nil), p[half:]...)
			whole = 1
		}
		if len(cur) > 0 {
			out = append(out, ws.NewBinaryFrame(cur))
		}
		return out
	}
}

// framedSizes are the payloads the framed client publishes.
var framedSizes = []int{
	0, 1, 125, 126, 1000, 20000, 3, 300,
	0, 1, 125, 126, 1000, 2, 3, 300,
	0, 1, 125, 126, 1000, 2, 3, 300,
	0, 1, 125, 126, 1000, 2, 3, 300,
}

// framingTimeout bounds each framed session.
const framingTimeout = 60 * time.Second

// TestBrokersGetValidMQTTWhateverTheFraming has a client of ours send its
// MQTT packets cut into 1-byte frames, or packed many to a frame with a
// partial one, with pings among them: CONNECT, SUBSCRIBE, PUBLISH at QoS 0
// and 1, PINGREQ, PUBACK and DISCONNECT. Against mochi in the embedded
// example, mosquitto behind the proxy, and mosquitto's own listener, the
// broker must answer every packet and deliver every message, byte for byte,
// to the client itself and to an ordinary one, and every ping must get its
// pong.
func TestBrokersGetValidMQTTWhateverTheFraming(t *testing.T) {
	t.Parallel()
	targets := startTargets(t)
	for _, f := range framings {
		t.Run(f.name, func(t *testing.T) {
			for _, tg := range targets {
				t.Run(tg.name, func(t *testing.T) {
					runFramed(t, tg, f)
				})
			}
		})
	}
}

func runFramed(t *testing.T, tg target, f framing) {
	base := fmt.Sprintf("interop/framing/%s", f.name)
	observed := observe(t, tg.url, base+"/+", len(framedSizes))

	c := &framedClient{t: t, ws: testbroker.DialWS(t, tg.url), framing: f, deadline: time.Now().Add(framingTimeout)}
	// Everything at once: MQTT lets a client send on right after CONNECT.
	packets := [][]byte{
		connectPacket(clientID("framed"), 60),
		subscribePacket(1, base+"/+", 1),
	}
	acks := map[uint16]bool{} // QoS 1 publishes awaiting their PUBACK
	pingreqs := 0
	for i, n := range framedSizes {
		qos := i % 2
		id := uint16(100 + i)
		if qos == 1 {
			acks[id] = false
		}
		packets = append(packets, publishPacket(fmt.Sprintf("%s/%d", base, i), qos, id, payload(n, uint32(i))))
		if i%3 == 2 {
			packets = append(packets, pingreq)
			pingreqs++
		}
	}
	c.send(packets...)

	// What the broker must send back.
	var (
		connack, suback bool
		pingresps       int
		echoed          = map[string][]byte{}
	)
	for !connack || !suback || pingresps < pingreqs || len(echoed) < len(framedSizes) || !allTrue(acks) {
		p := c.readPacket()
		if p == nil {
			t.Fatalf("CONNACK %v, SUBACK %v, PINGRESP %d of %d, PUBACK %v, messages %d of %d", connack, suback, pingresps, pingreqs, acks, len(echoed), len(framedSizes))
		}
		switch p[0] >> 4 {
		case 2: // CONNACK
			if !bytes.Equal(p, []byte{0x20, 0x02, 0x00, 0x00}) {
				t.Fatalf("CONNACK % x, want 20 02 00 00 (accepted)", p)
			}
			connack = true
		case 9: // SUBACK
			if !bytes.Equal(p, []byte{0x90, 0x03, 0x00, 0x01, 0x01}) {
				t.Fatalf("SUBACK % x, want 90 03 00 01 01 (QoS 1 granted)", p)
			}
			suback = true
		case 4: // PUBACK
			if len(p) != 4 {
				t.Fatalf("PUBACK % x, want 4 bytes", p)
			}
			id := uint16(p[2])<<8 | uint16(p[3])
			if done, ok := acks[id]; !ok || done {
				t.Fatalf("PUBACK % x for no QoS 1 publish awaiting one", p)
			}
			acks[id] = true
		case 13: // PINGRESP
			pingresps++
		case 3: // PUBLISH
			topic, id, body, err := parsePublish(p)
			if err != nil {
				t.Fatal(err)
			}
			echoed[topic] = body
			if id != 0 {
				c.send(pubackPacket(id))
			}
		default:
			t.Fatalf("unexpected packet % x", p[:min(len(p), 16)])
		}
	}
	for i, n := range framedSizes {
		topic := fmt.Sprintf("%s/%d", base, i)
		if want := payload(n, uint32(i)); !bytes.Equal(echoed[topic], want) {
			t.Errorf("the framed client got %d bytes on %s, want the %d bytes it sent", len(echoed[topic]), topic, n)
		}
		if got, want := observed.wait(t, topic), payload(n, uint32(i)); !bytes.Equal(got, want) {
			t.Errorf("the observer got %d bytes on %s, want the %d bytes sent", len(got), topic, n)
		}
	}

	// mqttws answers every ping. libwebsockets, in mosquitto's own
	// listener, answers some.
	c.awaitPongs(tg.mqttws)
	// DISCONNECT alone, with no ping after it: a broker closes the
	// connection as soon as it reads DISCONNECT, and a ping written then
	// meets a broken pipe (mosquitto's own listener, once in a few runs).
	if err := c.ws.WriteFrame(ws.NewBinaryFrame(disconnect)); err != nil {
		t.Fatalf("write DISCONNECT: %v", err)
	}
	c.framesSent++
	t.Logf("%d data frames and %d pings sent, %d data frames read", c.framesSent, len(c.pings), c.framesRead)
	c.expectEnd()
}

// framedClient is an MQTT 3.1.1 client that cuts its packets with a
// framing and reads the broker's across whatever frames they come in.
type framedClient struct {
	t          *testing.T
	ws         *testbroker.WSClient
	framing    framing
	deadline   time.Time
	in         []byte // bytes read, not parsed yet
	pings      [][]byte
	pongs      [][]byte
	framesSent int
	framesRead int
}

// send sends packets cut by the client's framing, with pings among the
// frames.
func (c *framedClient) send(packets ...[]byte) {
	c.t.Helper()
	for _, f := range c.framing.frames(packets) {
		if err := c.ws.WriteFrame(f); err != nil {
			c.t.Fatalf("write frame %d: %v", c.framesSent, err)
		}
		c.framesSent++
		if c.framesSent%c.framing.pingEvery == 0 {
			body := fmt.Appendf(nil, "ping %d", len(c.pings))
			c.pings = append(c.pings, body)
			if err := c.ws.WriteFrame(ws.NewPingFrame(body)); err != nil {
				c.t.Fatalf("write ping: %v", err)
			}
		}
	}
}

// readPacket returns the broker's next MQTT packet, or nil when none came
// before the deadline.
func (c *framedClient) readPacket() []byte {
	c.t.Helper()
	for {
		if p, n := splitPacket(c.in); p != nil {
			c.in = c.in[n:]
			return p
		}
		f, err := c.ws.ReadFrame(time.Until(c.deadline))
		if err != nil {
			c.t.Logf("read: %v", err)
			return nil
		}
		c.framesRead++
		switch f.Header.OpCode {
		case ws.OpBinary, ws.OpContinuation:
			c.in = append(c.in, f.Payload...)
		case ws.OpPong:
			c.pongs = append(c.pongs, f.Payload)
		case ws.OpPing:
			_ = c.ws.WriteFrame(ws.NewPongFrame(f.Payload))
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(f.Payload)
			c.t.Logf("close frame %d %q", code, reason)
			return nil
		default:
			c.t.Fatalf("unexpected %v frame", f.Header.OpCode)
		}
	}
}

// referencePongWait bounds the wait for the pongs of mosquitto's own
// listener, which may never answer the last ping.
const referencePongWait = 3 * time.Second

// awaitPongs reads pongs until every ping has its own (strict), or until the
// last one has or referencePongWait has passed, and fails the test unless
// the pongs answer pings in the order they were sent, with their payloads.
func (c *framedClient) awaitPongs(strict bool) {
	c.t.Helper()
	deadline := c.deadline
	if !strict {
		deadline = time.Now().Add(referencePongWait)
	}
	lastAnswered := func() bool {
		return len(c.pongs) > 0 && bytes.Equal(c.pongs[len(c.pongs)-1], c.pings[len(c.pings)-1])
	}
	for len(c.pongs) < len(c.pings) && !(!strict && lastAnswered()) {
		f, err := c.ws.ReadFrame(time.Until(deadline))
		if err != nil {
			if !strict && errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			c.t.Fatalf("%d pongs for %d pings: %v", len(c.pongs), len(c.pings), err)
		}
		switch f.Header.OpCode {
		case ws.OpPong:
			c.pongs = append(c.pongs, f.Payload)
		case ws.OpPing:
			_ = c.ws.WriteFrame(ws.NewPongFrame(f.Payload))
		default:
			c.t.Fatalf("waiting for pongs: unexpected %v frame % x", f.Header.OpCode, f.Payload)
		}
	}
	next := 0 // the first ping a pong may answer
	for i, p := range c.pongs {
		for next < len(c.pings) && !bytes.Equal(c.pings[next], p) {
			if strict {
				c.t.Fatalf("pong %d carries %q, want %q", i, p, c.pings[next])
			}
			next++
		}
		if next == len(c.pings) {
			c.t.Fatalf("pong %d carries %q, the payload of no ping sent after the one the pong before answered", i, p)
		}
		next++
	}
	switch {
	case len(c.pongs) == len(c.pings):
	case strict:
		c.t.Fatalf("%d pongs for %d pings", len(c.pongs), len(c.pings))
	case len(c.pongs) == 0:
		c.t.Fatalf("no pong for %d pings", len(c.pings))
	default:
		c.t.Logf("expected difference of mosquitto's own listener (libwebsockets): %d pongs for %d pings, the last answered: %v (RFC 6455 5.5.3 lets it answer only the latest of the pings waiting, but it must answer that one)", len(c.pongs), len(c.pings), lastAnswered())
	}
}

// expectEnd sends a close frame after DISCONNECT and fails the test unless
// the server ends the connection, with nothing but a close frame 1000 (or
// none) and pongs before.
func (c *framedClient) expectEnd() {
	c.t.Helper()
	_ = c.ws.WriteFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "")))
	for {
		f, err := c.ws.ReadFrame(time.Until(c.deadline))
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			c.t.Fatalf("after DISCONNECT: %v", err)
		}
		switch f.Header.OpCode {
		case ws.OpPong:
		case ws.OpClose:
			if code, reason := ws.ParseCloseFrameData(f.Payload); code != ws.StatusNormalClosure {
				c.t.Errorf("after DISCONNECT: close frame %d %q, want 1000", code, reason)
			}
			return
		default:
			c.t.Fatalf("after DISCONNECT: unexpected %v frame % x", f.Header.OpCode, f.Payload)
		}
	}
}

func allTrue(m map[uint16]bool) bool {
	for _, v := range m {
		if !v {
			return false
		}
	}
	return true
}

// observer is an ordinary client (paho.mqtt.golang) subscribed beside the
// framed one.
type observer struct {
	mu   sync.Mutex
	got  map[string][]byte
	more chan struct{}
}

// observe subscribes an ordinary client to filter at QoS 1.
func observe(t *testing.T, url, filter string, want int) *observer {
	t.Helper()
	o := &observer{got: map[string][]byte{}, more: make(chan struct{}, want)}
	c := pahotest.Connect(t, url, clientID("observer"), nil)
	tok := c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
		o.mu.Lock()
		o.got[m.Topic()] = m.Payload()
		o.mu.Unlock()
		select {
		case o.more <- struct{}{}:
		default:
		}
	})
	if !tok.WaitTimeout(framingTimeout) || tok.Error() != nil {
		t.Fatalf("observer: subscribe to %s: %v", filter, tok.Error())
	}
	return o
}

// wait returns what the observer got on topic, waiting for it up to
// framingTimeout.
func (o *observer) wait(t *testing.T, topic string) []byte {
	t.Helper()
	timer := time.NewTimer(framingTimeout)
	defer timer.Stop()
	for {
		o.mu.Lock()
		p, ok := o.got[topic]
		o.mu.Unlock()
		if ok {
			return p
		}
		select {
		case <-o.more:
		case <-timer.C:
			t.Errorf("the observer got nothing on %s within %v", topic, framingTimeout)
			return nil
		}
	}
}
