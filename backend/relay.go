package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/internal/park"
)

// Copy buffer sizes: a relay reads into a small buffer while traffic is
// light and borrows a large one while reads fill the small one, so an idle
// connection holds 2 × 512 bytes rather than 2 × 16 KiB.
const (
	smallCopySize = 512
	largeCopySize = 16 << 10
)

// brokerLinger bounds the wait for the broker to close its side once the
// client has gone and the broker's connection was half-closed.
const brokerLinger = 5 * time.Second

// relay copies both ways between the client's stream and the broker, which
// b dials meanwhile; when watch is not nil, the client's first packet must
// be a CONNECT, whole within the watch's timeout, and the broker must answer
// it within ConnackTimeout, or the CONNECT goes to the next node (see
// awaitAnswer). The broker closing its side ends the relay, and the client
// is then closed with 1000, or with 1012 when the client had not asked for
// it and the broker's node fails a new connection (see Dialer.wentAway). The client closing its side half-closes the broker's
// connection, so that the broker sees a clean end of stream, and the relay
// waits a little for the broker to close in turn. A client that breaks the
// CONNECT rules is closed with the watch's code and the broker's connection
// dropped.
func (d *Dialer) relay(ctx context.Context, client net.Conn, b *pendingBroker, watch *connectWatch, cancelDial context.CancelFunc) error {
	up := &clientSide{answer: &answerWait{settled: make(chan struct{})}}
	if watch != nil {
		up.answer.timeout = d.connackTimeout()
	}
	up.parked = parkedRelay{d: d, ctx: ctx, ps: d.parking(client), client: client, up: up}
	up.wg.Add(1)
	go func() {
		if !d.copyFromClient(ctx, client, b, watch, up, cancelDial) {
			up.finish()
		}
	}()

	<-b.done
	if b.err != nil {
		up.wg.Wait() // a failed dial ends the client's side too
		switch {
		case up.broken != nil:
			return up.broken
		case up.err != nil && !errors.Is(up.err, errNoBroker):
			return nil // the client went away during the dial, which was then canceled
		}
		return b.err
	}

	buf := make([]byte, smallCopySize)
	n, failure, firstErr := d.awaitAnswer(ctx, client, b, up.answer, buf)
	up.answer.settle(failure)
	if failure != nil {
		ended := ctx.Err() != nil
		closeClient(client, failure.Code, failure.Reason)
		up.wg.Wait()
		if ended || (up.err != nil && !errors.Is(up.err, errNoBroker)) {
			return nil // the stream ended meanwhile
		}
		return failure
	}
	broker, node := up.answer.current(b)
	up.doneWithAnswer()
	b.route, b.failed = nil, nil // no other node is tried now: let them go

	// An error writing to the client is the client's end, not the broker's
	// failure: the stream keeps its own record of it.
	var brokerErr error
	clientGone := false
	if n > 0 {
		_, werr := client.Write(buf[:n])
		clientGone = werr != nil
	}
	switch {
	case clientGone:
	case firstErr == nil:
		if d.parkBroker(broker, node, up) {
			return park.ErrDetached
		}
		var werr error
		brokerErr, werr = d.copyStream(client, broker, buf, nil, nil)
		clientGone = werr != nil
	case !errors.Is(firstErr, io.EOF):
		brokerErr = firstErr
	}
	return d.endRelay(ctx, client, broker, node, up, brokerErr, clientGone, time.Now())
}

// endRelay ends a relay whose broker side ended at endedAt, with brokerErr
// from reading the broker, or with the client gone, and returns the relay's
// result: it closes the broker and the client, with the code the end calls
// for, and waits for the client's side to end.
func (d *Dialer) endRelay(ctx context.Context, client, broker net.Conn, node *node, up *clientSide, brokerErr error, clientGone bool, endedAt time.Time) error {
	waited := false
	if errors.Is(brokerErr, net.ErrClosed) {
		// The client's side closed the broker connection as it ended:
		// its reason decides.
		up.wg.Wait()
		waited = true
	}
	_ = broker.Close()
	if waited && (up.brokerFailed || up.brokerStuck) {
		// The client's side closed the broker connection because a write
		// to it failed or stalled: the broker's failure, as a failed read
		// would be.
		cause := errBrokerWriteFailed
		if up.brokerStuck {
			cause = errBrokerStoppedReading
		}
		brokerErr, waited = cause, false
	}
	var result error
	code, reason := mqttws.CloseNormal, ""
	switch {
	case waited && up.broken != nil:
		code, reason = up.broken.Code, up.broken.Reason
		result = up.broken
	case clientGone || waited || isTimeout(brokerErr) || up.ended.Load() || up.tracker.asked.Load():
		// The client ended, or asked the broker to close.
	case d.wentAway(ctx, node, endedAt):
		code, reason = mqttws.CloseServiceRestart, "broker went away"
		err := brokerErr
		if err == nil {
			err = errClosedUnasked
		}
		result = &mqttws.CloseError{Code: code, Reason: reason,
			Err: fmt.Errorf("backend: broker %s %s went away: %w, and a new connection to it fails", d.network(), node.address, err)}
	case brokerErr != nil:
		code, reason = mqttws.CloseInternalError, "broker connection failed"
		result = &mqttws.CloseError{Code: code, Reason: reason,
			Err: fmt.Errorf("backend: broker %s %s: %w", d.network(), node.address, brokerErr)}
	}
	// Closing the client ends the other copy, which is reading from it.
	closeClient(client, code, reason)
	if !waited {
		up.wg.Wait()
	}
	return result
}

// errClosedUnasked is the cause of a 1012 when the broker's connection
// ended with no error.
var errClosedUnasked = errors.New("it closed the connection unasked")

// The broker's error when the client's side closed its connection because a
// write to it failed (reset, broken pipe), or waited brokerLinger once the
// client's stream had ended (see clientSide.bound).
var (
	errBrokerWriteFailed    = errors.New("a write to it failed")
	errBrokerStoppedReading = fmt.Errorf("it stopped reading: a write to it waited %v after the client's stream ended", brokerLinger)
)

// closeClient closes the client's stream with code and reason.
func closeClient(client net.Conn, code mqttws.CloseCode, reason string) {
	if s, ok := client.(interface {
		CloseWith(mqttws.CloseCode, string) error
	}); ok {
		_ = s.CloseWith(code, reason)
	} else {
		_ = client.Close()
	}
}

// clientSide is what the client's side of the relay shares with the
// broker's: its results are read once it ended (wg.Wait), or
// atomically.
type clientSide struct {
	answer  *answerWait
	tracker packetTracker
	broken  *mqttws.CloseError // the client broke the CONNECT rules
	err     error              // why the client's side ended before the copy began
	wg      sync.WaitGroup     // done once the client's side ended
	ended   atomic.Bool        // the client's stream ended: the broker's close was asked for
	bounded atomic.Bool        // the stream's context ended: each write to the broker gets brokerLinger

	mu           sync.Mutex
	over         bool  // the client's side ended
	brokerParked bool  // the broker's side runs in parked.bp
	brokerStuck  bool  // a write to the broker timed out (see bound): read once the client's side ended
	brokerFailed bool  // a write to the broker failed otherwise: read once the client's side ended
	answerDone   uint8 // the sides done with answer, which is dropped after both

	parked parkedRelay // the pumps, when the relay is parked (park.go)
}

// doneWithAnswer notes that a side no longer uses up.answer; after both,
// it is let go, so that a long connection does not keep it.
func (up *clientSide) doneWithAnswer() {
	up.mu.Lock()
	defer up.mu.Unlock()
	up.answerDone++
	if up.answerDone == 2 {
		up.answer = nil
	}
}

// finish records the end of the client's side and wakes the broker's, when
// it is parked, to give the broker brokerLinger to close in turn.
func (up *clientSide) finish() {
	up.mu.Lock()
	up.over = true
	parked := up.brokerParked
	up.mu.Unlock()
	up.wg.Done()
	if parked {
		up.parked.bp.Ready()
	}
}

// copyFromClient is the client's side of the relay: it watches the CONNECT
// (when watch is not nil), waits for the broker and for its answer while
// the CONNECT may be sent again, and copies the client to it until the
// client ends; then it half-closes the broker's connection, or closes it
// when the client broke the CONNECT rules.
//
// It reports whether the copy goes on in a pump (see parkClient), which
// then ends the client's side; otherwise the caller does.
func (d *Dialer) copyFromClient(ctx context.Context, client net.Conn, b *pendingBroker, watch *connectWatch, up *clientSide, cancelDial context.CancelFunc) bool {
	buf := make([]byte, smallCopySize)
	if watch != nil {
		up.broken, up.err = watch.watch(ctx, client, b, up, buf)
		if up.broken != nil || up.err != nil {
			cancelDial() // no use for a broker connection any more
		}
	}
	<-b.done
	if b.err != nil {
		if up.broken == nil && up.err == nil {
			up.err = errNoBroker
		}
		return false
	}
	if up.broken != nil || up.err != nil {
		up.answer.abandon(b)
		return false
	}
	if err := up.answer.wait(ctx, b); err != nil {
		up.err = err
		return false
	}
	broker, _ := up.answer.current(b)
	up.doneWithAnswer()
	var tracker *packetTracker
	if watch != nil {
		tracker = &up.tracker
	}
	if d.parkClient(broker, tracker, up) {
		return true
	}
	stop := afterStreamEnds(ctx, func() { up.bound(broker) })
	_, writeErr := d.copyStream(broker, client, buf, tracker, &up.bounded)
	stop()
	d.clientEnded(broker, writeErr, up)
	return false
}

// bound is called once the client's stream ended: from then on each write
// to the broker gets brokerLinger, the one under way included, so that the
// client's last bytes still go to a broker that reads while one that
// stopped reading (a hung process, a host gone silent) cannot hold the
// relay until the kernel gives up on it.
func (up *clientSide) bound(broker net.Conn) {
	up.bounded.Store(true)
	boundBrokerWrite(broker)
}

// boundBrokerWrite gives a write to the broker brokerLinger from now.
func boundBrokerWrite(broker net.Conn) {
	_ = broker.SetWriteDeadline(time.Now().Add(brokerLinger))
}

// clientEnded half-closes the broker's connection once the client's copy
// to it ended with writeErr, or closes it when it cannot half-close.
func (d *Dialer) clientEnded(broker net.Conn, writeErr error, up *clientSide) {
	switch {
	case writeErr == nil:
		up.ended.Store(true) // the client ended, not the broker
	case isTimeout(writeErr):
		up.brokerStuck = true
	default:
		up.brokerFailed = true
	}
	// A broker that failed a write (reset, or timed out as it stopped
	// reading) is not given brokerLinger to close in turn.
	if writeErr != nil || !closeWrite(broker) {
		_ = broker.Close()
		return
	}
	// With over, under up.mu: a parked relay's broker side sets deadlines
	// of its own only while over is false, so none can replace this one.
	up.mu.Lock()
	up.over = true
	_ = broker.SetReadDeadline(time.Now().Add(brokerLinger))
	up.mu.Unlock()
}

// copyStream copies src to dst until src ends, each read going out as one
// write (so one WebSocket frame per broker read, never delayed). It reads
// into small while traffic is light. tracker, when not nil, follows the
// client's packets; bounded, when not nil and set, gives each write to dst
// brokerLinger (see clientSide.bound). It returns the error that ended the
// copy: reading src (nil at its end) or writing dst.
func (d *Dialer) copyStream(dst net.Conn, src io.Reader, small []byte, tracker *packetTracker, bounded *atomic.Bool) (readErr, writeErr error) {
	var large *[]byte
	defer func() {
		if large != nil {
			d.largeBuffers.Put(large)
		}
	}()
	for {
		buf := small
		if large != nil {
			buf = *large
		}
		n, err := src.Read(buf)
		if n > 0 {
			if tracker != nil {
				tracker.feed(buf[:n])
			}
			if bounded != nil && bounded.Load() {
				boundBrokerWrite(dst)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return nil, werr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		if err != nil {
			return err, nil
		}
		switch {
		case large == nil && n == len(small):
			large = d.largeBuffer()
		case large != nil && n <= len(small):
			d.largeBuffers.Put(large)
			large = nil
		}
	}
}

// closeWrite half-closes c when it can.
func closeWrite(c net.Conn) bool {
	cw, ok := c.(interface{ CloseWrite() error })
	return ok && cw.CloseWrite() == nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// largeBuffer takes a large copy buffer from the Dialer's pool.
func (d *Dialer) largeBuffer() *[]byte {
	if b, ok := d.largeBuffers.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, largeCopySize)
	return &b
}
