package backend

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/mqttws/mqttws"
)

// maxResend bounds the bytes of a client's CONNECT kept to be sent to
// another node; a longer one is not sent again.
const maxResend = 16 << 10

// answerWait is a stream's wait for the broker's first byte, its CONNACK.
// Until it comes, the bytes sent to the broker (the client's CONNECT, and
// what came with it) are kept, so that a node that does not answer can be
// left for the next one: nothing reached the client yet, so it cannot tell.
// The client's side of the relay sends no more once the CONNECT is whole,
// until the wait is settled.
type answerWait struct {
	timeout time.Duration // ConnackTimeout; zero: no deadline, nothing sent again

	mu        sync.Mutex
	sent      []byte // bytes sent before an answer, unless tooLong
	tooLong   bool   // more than maxResend bytes were sent
	armed     bool   // the CONNECT is all sent, the deadline set
	answered  bool   // the broker's first byte came
	abandoned bool   // the client's side gave up
	conn      net.Conn
	node      *node // conn's; nil while it is the dialed one, b.conn
	isSettled bool

	settled chan struct{} // closed once the wait is over
	failure *mqttws.CloseError
}

// errClosedBeforeAnswer is why a node failed that closed the connection
// before it answered a CONNECT.
var errClosedBeforeAnswer = errors.New("connection closed before an answer")

// send writes p, bytes from the client, to broker, keeping them to be sent
// again; last tells that they end the CONNECT: the deadline for the answer
// starts then.
func (a *answerWait) send(broker net.Conn, p []byte, last bool) error {
	if a.timeout > 0 {
		a.mu.Lock()
		if !a.answered && !a.isSettled {
			switch {
			case a.tooLong:
			case len(a.sent)+len(p) > maxResend:
				a.tooLong, a.sent = true, nil
			default:
				a.sent = append(a.sent, p...)
			}
			if last {
				a.armed = true
				_ = broker.SetReadDeadline(time.Now().Add(a.timeout))
			}
		}
		a.mu.Unlock()
	}
	_, err := broker.Write(p)
	return err
}

// answer notes the broker's first byte on broker.
func (a *answerWait) answer(broker net.Conn) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.answered, a.sent = true, nil
	if a.armed {
		_ = broker.SetReadDeadline(time.Time{})
	}
}

// lost tells what a failed first read of the broker means: the CONNECT can
// be sent to the next node (resend), or the node is hung (a deadline). Both
// are false when the CONNECT was not all sent, the broker answered, or the
// stream is ending.
func (a *answerWait) lost(ctx context.Context, err error) (resend, hung bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.armed || a.answered || a.abandoned || ctx.Err() != nil {
		return false, false
	}
	return !a.tooLong, isTimeout(err)
}

// switchTo makes c, a connection to n, the broker connection under a new
// deadline, and returns the bytes to send it; ok is false when the client's
// side gave up.
func (a *answerWait) switchTo(c net.Conn, n *node) (resend []byte, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.abandoned {
		return nil, false
	}
	a.conn, a.node = c, n
	_ = c.SetReadDeadline(time.Now().Add(a.timeout))
	return a.sent, true
}

// current returns the broker connection and its node.
func (a *answerWait) current(b *pendingBroker) (net.Conn, *node) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn != nil {
		return a.conn, a.node
	}
	return b.conn, b.node
}

// settle ends the wait, with failure when no broker answered.
func (a *answerWait) settle(failure *mqttws.CloseError) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.isSettled {
		a.isSettled, a.failure = true, failure
		close(a.settled)
	}
}

// wait waits, on the client's side, until the wait is settled, if the
// CONNECT may be sent again; errNoBroker tells that no broker answered.
// When ctx ends first, it gives the broker connection up.
func (a *answerWait) wait(ctx context.Context, b *pendingBroker) error {
	a.mu.Lock()
	armed := a.armed
	a.mu.Unlock()
	if !armed {
		return nil
	}
	select {
	case <-a.settled:
		if a.failure != nil {
			return errNoBroker
		}
		return nil
	case <-ctx.Done():
		a.abandon(b)
		return ctx.Err()
	}
}

// abandon closes the broker connection, on the client's side, which gave it
// up: it is sent nothing again.
func (a *answerWait) abandon(b *pendingBroker) {
	a.mu.Lock()
	a.abandoned = true
	c := a.conn
	if c == nil {
		c = b.conn
	}
	a.mu.Unlock()
	_ = c.Close()
}

// awaitAnswer reads the broker's first bytes into buf and returns what the
// read returned. While the client's CONNECT may be sent again (see
// answerWait), a node that does not answer within ConnackTimeout is marked
// down and left, and so is, without being marked down, one that closes the
// connection before answering; the CONNECT goes to the next node of the
// stream's route. failure is set when no node answered, or the stream
// ended meanwhile.
func (d *Dialer) awaitAnswer(ctx context.Context, client net.Conn, b *pendingBroker, a *answerWait, buf []byte) (n int, failure *mqttws.CloseError, err error) {
	for {
		broker, node := a.current(b)
		n, err = broker.Read(buf)
		if n > 0 {
			a.answer(broker)
			d.markUp(node, "answered a CONNECT")
			return n, nil, err
		}
		resend, hung := a.lost(ctx, err)
		if !resend && !hung {
			return 0, nil, err
		}
		e := &nodeError{network: d.network(), address: node.address, step: "MQTT CONNECT to", err: err}
		if hung {
			e.timeout = a.timeout
			d.markDown(node, e)
		} else if errors.Is(err, io.EOF) {
			e.err = errClosedBeforeAnswer
		}
		b.failed.nodes = append(b.failed.nodes, e)
		dropConn(broker)
		if !resend {
			return 0, &mqttws.CloseError{Code: mqttws.CloseTryAgainLater, Reason: "broker did not answer", Err: b.failed}, nil
		}
		if !d.resend(ctx, client, b, a) {
			if ctx.Err() != nil {
				return 0, &mqttws.CloseError{Code: mqttws.CloseGoingAway, Err: ctx.Err()}, nil
			}
			return 0, &mqttws.CloseError{Code: mqttws.CloseTryAgainLater, Reason: "broker did not answer", Err: b.failed}, nil
		}
	}
}

// resend connects to the next node of b's route that accepts a connection
// and sends it the client's CONNECT again. It reports false when no node
// is left, or the client's side gave up.
func (d *Dialer) resend(ctx context.Context, client net.Conn, b *pendingBroker, a *answerWait) bool {
	for {
		c, n := d.dialNext(ctx, b)
		if c == nil {
			return false
		}
		if d.ProxyProtocol > 0 {
			if err := writeProxyHeader(c, d.ProxyProtocol, client); err != nil {
				b.failed.nodes = append(b.failed.nodes, &nodeError{network: d.network(), address: n.address, step: "PROXY header to", err: err})
				_ = c.Close()
				continue
			}
		}
		connect, ok := a.switchTo(c, n)
		if !ok {
			_ = c.Close()
			return false
		}
		// A failed write fails the next read too, which awaitAnswer takes
		// like any node that closed before answering.
		_, _ = c.Write(connect)
		return true
	}
}

// dropConn closes c, with a reset when it is TCP, so that a hung broker
// that wakes up finds no CONNECT waiting to be served.
func dropConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
