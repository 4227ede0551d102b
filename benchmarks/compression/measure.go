package compression

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/mqttws/mqttws/internal/pahotest"
)

// Clients are the client stacks an end-to-end run can use.
const (
	ClientPaho = "paho"    // eclipse/paho.mqtt.golang v1.5.1 over gorilla/websocket
	ClientNode = "mqtt.js" // MQTT.js 5.16.0 in Node, over ws
)

// E2EResult is one end-to-end run: what the subscriber saw, and what the
// broker process spent from before the clients connected until every
// message was delivered (their connections still open).
type E2EResult struct {
	Load   LoadResult
	Server BrokerStats // differences, except Conns and the compression counts, which are totals
}

// WirePerMsg returns the bytes on the wire, both ways and handshakes
// included, per message delivered: each message crosses it twice, from a
// publisher and to the subscriber, with its PUBACKs.
func (r E2EResult) WirePerMsg() float64 {
	return float64(r.Server.Wire()) / float64(max(r.Load.Received, 1))
}

// CPUPerMsg returns the broker process's CPU time per message delivered.
func (r E2EResult) CPUPerMsg() time.Duration {
	return r.Server.CPU / time.Duration(max(r.Load.Received, 1))
}

// ClientCPUPerMsg returns the clients' CPU time per message delivered.
func (r E2EResult) ClientCPUPerMsg() time.Duration {
	return r.Load.ClientCPU / time.Duration(max(r.Load.Received, 1))
}

// SyscallsPerMsg returns the broker's read and write system calls per
// message delivered.
func (r E2EResult) SyscallsPerMsg() float64 {
	return float64(r.Server.Syscalls) / float64(max(r.Load.Received, 1))
}

// MeasureEndToEnd starts a broker with compression in mode (env added to
// its environment), runs l (its URL set here) with client, and returns the
// result. The clients offer permessage-deflate whatever the mode, as
// browsers and Node do: "off" is the server's choice.
func MeasureEndToEnd(ctx context.Context, client string, mode Mode, l Load, env ...string) (E2EResult, error) {
	var res E2EResult
	b, err := StartBroker(mode, env...)
	if err != nil {
		return res, err
	}
	defer func() { _ = b.Stop() }()
	l.URL = b.URL
	before, err := b.Stats()
	if err != nil {
		return res, err
	}
	var after BrokerStats
	var statsErr error
	atEnd := func() {
		// The last bytes delivered are in the kernel's counts already
		// (TCP_INFO counts what was sent and received, not acknowledged);
		// the PUBACK of the last message may still be on its way back.
		time.Sleep(50 * time.Millisecond)
		after, statsErr = b.Stats()
	}
	run := RunPaho
	switch client {
	case ClientPaho:
	case ClientNode:
		run = RunNode
	default:
		return res, fmt.Errorf("compression: unknown client %q", client)
	}
	res.Load, err = run(ctx, l, atEnd)
	if err != nil {
		return res, err
	}
	if statsErr != nil {
		return res, statsErr
	}
	res.Server = after
	res.Server.CPU -= before.CPU
	res.Server.Syscalls -= before.Syscalls
	res.Server.WireIn -= before.WireIn
	res.Server.WireOut -= before.WireOut
	res.Server.WrapIn -= before.WrapIn
	res.Server.WrapOut -= before.WrapOut
	return res, b.Stop()
}

// IdleResult is the broker's memory per idle connection.
type IdleResult struct {
	Conns      int
	HeapStack  float64 // Go heap in use and goroutine stacks, bytes per connection
	RSS        float64 // resident set, bytes per connection
	Compressed uint64  // connections that negotiated permessage-deflate
}

// MeasureIdle starts a broker with compression in mode, opens n MQTT
// connections through it (gorilla offering permessage-deflate, CONNECT,
// CONNACK, keepalive 600 s) after 32 to warm it up, and returns the
// broker's memory growth per connection after a GC that returns free
// memory to the system.
func MeasureIdle(mode Mode, n int) (IdleResult, error) {
	res := IdleResult{Conns: n}
	b, err := StartBroker(mode)
	if err != nil {
		return res, err
	}
	defer func() { _ = b.Stop() }()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	open := func(k int) error {
		for range k {
			c, err := connectIdle(b.URL, fmt.Sprintf("idle%d", len(conns)))
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	}
	if err := open(32); err != nil {
		return res, err
	}
	time.Sleep(200 * time.Millisecond)
	before, err := b.Memory()
	if err != nil {
		return res, err
	}
	if err := open(n); err != nil {
		return res, err
	}
	time.Sleep(500 * time.Millisecond)
	after, err := b.Memory()
	if err != nil {
		return res, err
	}
	res.HeapStack = (float64(after.HeapInuse+after.StackInuse) - float64(before.HeapInuse+before.StackInuse)) / float64(n)
	res.RSS = float64(after.RSS-before.RSS) / float64(n)
	res.Compressed = after.Compressed
	return res, nil
}

// connectIdle opens an MQTT 3.1.1 connection that then stays idle.
func connectIdle(brokerURL, id string) (net.Conn, error) {
	c, _, err := pahotest.DialGorilla(brokerURL, 10*time.Second)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(connectPacket(id, 600)); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("compression: CONNECT: %w", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var ack [4]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("compression: CONNACK: %w", err)
	}
	if !bytes.Equal(ack[:], []byte{0x20, 2, 0, 0}) {
		_ = c.Close()
		return nil, fmt.Errorf("compression: CONNACK % x, want 20 02 00 00", ack)
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, nil
}

// connectPacket returns an MQTT 3.1.1 CONNECT with a clean session.
func connectPacket(id string, keepalive uint16) []byte {
	vh := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, byte(keepalive >> 8), byte(keepalive), byte(len(id) >> 8), byte(len(id))}
	body := append(vh, id...)
	if len(body) > 127 {
		panic(errors.New("compression: client id too long for a one-byte remaining length"))
	}
	return append([]byte{0x10, byte(len(body))}, body...)
}
