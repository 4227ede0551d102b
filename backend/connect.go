package backend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/mqttws/mqttws"
)

// connectFirstByte is the first byte of a CONNECT packet: type 1, flags 0.
const connectFirstByte = 0x10

// connectWatch follows the client's first MQTT packet through its fixed
// header and counts its remaining bytes down, so that the relay knows when
// a whole CONNECT has gone by. It holds no bytes: the length the client
// declares is a counter, never an allocation.
type connectWatch struct {
	timeout  time.Duration
	deadline time.Time // moved on by the time spent waiting for the broker

	cur        packetCursor
	connected  bool  // a whole CONNECT went by
	bytesTotal int64 // bytes received, for the log
	extra      int   // bytes of the last chunk fed that came after the CONNECT
}

// feed follows p, the next bytes from the client. It returns a
// *mqttws.CloseError with CloseProtocolError (1002) when they cannot be the
// start of a CONNECT packet. Bytes after the CONNECT are not looked at:
// extra counts them.
func (w *connectWatch) feed(p []byte) *mqttws.CloseError {
	w.bytesTotal += int64(len(p))
	for len(p) > 0 && !w.connected {
		var ev cursorEvent
		var first byte
		p, ev, first = w.cur.next(p)
		switch ev {
		case gotType:
			if first != connectFirstByte {
				return notConnect(first)
			}
		case tooLong:
			return &mqttws.CloseError{
				Code:   mqttws.CloseProtocolError,
				Reason: "malformed MQTT CONNECT: Remaining Length longer than 4 bytes",
			}
		case gotPacket:
			w.connected = true
		}
	}
	w.extra = len(p)
	return nil
}

// done reports whether a whole CONNECT has gone by.
func (w *connectWatch) done() bool { return w.connected }

// headerChecked reports whether the CONNECT's fixed header is known good:
// until then, no byte goes to the broker.
func (w *connectWatch) headerChecked() bool { return w.connected || w.cur.stage == watchBody }

// expired is the error of a client whose CONNECT was not whole in time.
func (w *connectWatch) expired() *mqttws.CloseError {
	var got string
	switch w.cur.stage {
	case watchType:
		got = "no MQTT byte"
	case watchLength:
		got = fmt.Sprintf("%d bytes of the CONNECT's fixed header, unfinished", w.bytesTotal)
	default:
		got = fmt.Sprintf("%d of the CONNECT's %d remaining bytes", w.cur.length-w.cur.remaining, w.cur.length)
	}
	return &mqttws.CloseError{
		Code:   mqttws.ClosePolicyViolation,
		Reason: fmt.Sprintf("no MQTT CONNECT packet within %v", w.timeout),
		Err:    fmt.Errorf("backend: the client sent %s", got),
	}
}

// notConnect is the error of a first packet whose first byte is b, not the
// 0x10 of a CONNECT.
func notConnect(b byte) *mqttws.CloseError {
	reason := fmt.Sprintf("first MQTT packet is %s, not CONNECT", packetNames[b>>4])
	if b>>4 == 1 {
		reason = fmt.Sprintf("malformed MQTT CONNECT: fixed header flags 0x%x, want 0", b&0x0f)
	}
	return &mqttws.CloseError{Code: mqttws.CloseProtocolError, Reason: reason}
}

// packetNames names the MQTT control packet types.
var packetNames = [16]string{
	"of reserved type 0", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
	"SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH",
}

// errNoBroker ends the CONNECT watch when the dial failed: the dial's error
// is what the client gets.
var errNoBroker = errors.New("backend: no broker connection")

// watch reads the client into buf until its CONNECT packet is whole, while
// b is dialed. It forwards the bytes once the broker is there and the fixed
// header is checked, so the broker sees none of a first packet that is not
// a CONNECT. When buf is full before the broker is there, it waits for the
// dial and moves the deadline on by the wait.
//
// The bytes go to the broker through up.answer, which keeps them while the
// CONNECT may be sent to another node; those after the CONNECT go through
// up.tracker.
//
// It returns nothing once the CONNECT is whole and forwarded, the client's
// read deadline cleared; broken when the client broke the rules (1002 or
// 1008); errNoBroker when the dial failed; another error when the client
// went away, the stream is closing or the broker failed.
func (w *connectWatch) watch(ctx context.Context, client net.Conn, b *pendingBroker, up *clientSide, buf []byte) (broken *mqttws.CloseError, err error) {
	n := 0 // bytes in buf not yet forwarded
	for !w.done() {
		if n == len(buf) {
			waitFrom := time.Now()
			<-b.done
			if b.err != nil {
				return nil, errNoBroker
			}
			if ctx.Err() != nil {
				return nil, ctx.Err() // the stream is closing: leave its deadlines alone
			}
			w.deadline = w.deadline.Add(time.Since(waitFrom))
			if err := client.SetReadDeadline(w.deadline); err != nil {
				return nil, fmt.Errorf("backend: set CONNECT deadline: %w", err)
			}
			if err := up.answer.send(b.conn, buf[:n], false); err != nil {
				return nil, err
			}
			n = 0
		}
		m, rerr := client.Read(buf[n:])
		if m > 0 {
			if broken := w.feed(buf[n : n+m]); broken != nil {
				return broken, nil
			}
			n += m
			if w.extra > 0 {
				up.tracker.feed(buf[n-w.extra : n])
			}
			if w.headerChecked() && b.dialed() {
				if b.err != nil {
					return nil, errNoBroker
				}
				if err := up.answer.send(b.conn, buf[:n], w.done()); err != nil {
					return nil, err
				}
				n = 0
			}
		}
		if rerr != nil && !w.done() {
			return w.readFailed(ctx, b, rerr)
		}
	}
	if err := client.SetReadDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("backend: clear CONNECT deadline: %w", err)
	}
	<-b.done
	if b.err != nil {
		return nil, errNoBroker
	}
	if n > 0 {
		if err := up.answer.send(b.conn, buf[:n], true); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// readFailed tells what a failed read of the client means while its CONNECT
// is awaited: the deadline, a failed dial waking the read up, or the
// client's end.
func (w *connectWatch) readFailed(ctx context.Context, b *pendingBroker, err error) (*mqttws.CloseError, error) {
	if ctx.Err() != nil || !isTimeout(err) {
		return nil, err // the client went away, or the stream is closing
	}
	if !time.Now().Before(w.deadline) {
		return w.expired(), nil
	}
	// Before the deadline, only a failed dial ends a read with a timeout;
	// its error is ready once done is closed.
	<-b.done
	if b.err != nil {
		return nil, errNoBroker
	}
	return nil, err
}
