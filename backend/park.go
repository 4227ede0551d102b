package backend

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/mqttws/mqttws/internal/park"
)

// A relay whose client is an mqttws stream over plain TCP, and whose broker
// connection is plain TCP or a unix socket, copies each way with a pump
// instead of a goroutine blocked in Read (on linux: see package park): an
// idle connection then holds no goroutine, no stack and no copy buffer. A
// pump runs a goroutine only while its side has bytes to copy, or an end to
// meet.

// pumpState is where a pump is.
type pumpState uint8

const (
	pumpRunning pumpState = iota // a goroutine copies
	pumpParked                   // waiting for bytes, in the epoll set
	pumpDone                     // the side ended
)

// pump copies one side of a parked relay.
type pump struct {
	w        *park.Waiter
	buffered func() bool // bytes are read but not yet returned (the stream's)
	mayPark  func() bool // called with mu held
	step     func() bool // one read and its write; false: the side ended
	end      func()      // after the last step, once

	mu    sync.Mutex
	state pumpState
	again bool // woken while running: look again before parking
}

// newPump returns a running pump on c's raw connection, or nil when c
// cannot be parked.
func newPump(rc syscall.RawConn, p *pump) *pump {
	w, err := park.NewWaiter(rc, p.wake)
	if err != nil {
		return nil
	}
	p.w = w
	return p
}

// wake runs the pump: bytes came, or its side must meet an end.
func (p *pump) wake() {
	p.mu.Lock()
	switch p.state {
	case pumpParked:
		p.state = pumpRunning
		p.mu.Unlock()
		go p.run(true)
	case pumpRunning:
		p.again = true
		p.mu.Unlock()
	default:
		p.mu.Unlock()
	}
}

// run copies while bytes are waiting, then parks; stepFirst reads at once,
// for a pump woken by readiness or an end.
func (p *pump) run(stepFirst bool) {
	for {
		if !stepFirst && !p.buffered() && p.w.Pending() == 0 && p.park() {
			return
		}
		stepFirst = false
		if !p.step() {
			p.mu.Lock()
			p.state = pumpDone
			p.mu.Unlock()
			p.w.Close()
			p.end()
			return
		}
	}
}

// park parks the pump unless it was woken meanwhile or may not park; it
// reports whether it did, after which the goroutine must return.
func (p *pump) park() bool {
	p.mu.Lock()
	if p.again || !p.mayPark() {
		p.again = false
		p.mu.Unlock()
		return false
	}
	p.state = pumpParked
	p.mu.Unlock()
	if p.w.Arm() == nil {
		return true
	}
	// The connection is closed: read on, to meet the end.
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != pumpParked {
		return true // woken meanwhile: that goroutine runs the pump
	}
	p.state = pumpRunning
	return false
}

// parking returns the stream to park the relay of client with, or nil.
func (d *Dialer) parking(client net.Conn) park.Stream {
	if !park.Supported || d.TLSConfig != nil {
		return nil
	}
	ps, ok := park.Lookup(client)
	if !ok {
		return nil
	}
	return ps
}

// parkClient goes on copying the client to broker in a pump, and reports
// whether it does; the client's side of the relay then ends in the pump.
func (d *Dialer) parkClient(ctx context.Context, ps park.Stream, client, broker net.Conn, tracker *packetTracker, up *clientSide) bool {
	if ps == nil {
		return false
	}
	if _, ok := park.RawConn(broker); !ok {
		return false
	}
	rc, err := ps.RawConn()
	if err != nil {
		return false
	}
	var writeErr error
	var stop func() bool
	p := newPump(rc, &pump{
		buffered: ps.Buffered,
		// Once the stream is closing, nothing would wake a parked pump
		// when the connection closes: read on, within the close's deadline.
		mayPark: func() bool { return ctx.Err() == nil },
		step: func() bool {
			buf := d.largeBuffer()
			defer d.largeBuffers.Put(buf)
			n, err := client.Read(*buf)
			if n > 0 {
				if tracker != nil {
					tracker.feed((*buf)[:n])
				}
				if _, werr := broker.Write((*buf)[:n]); werr != nil {
					writeErr = werr
					return false
				}
			}
			return err == nil
		},
		end: func() {
			stop()
			d.clientEnded(broker, writeErr, up)
			up.finish()
		},
	})
	if p == nil {
		return false
	}
	// The stream's context ends when it closes (keepalive, Shutdown, a
	// close by the broker's side): the pump must then meet the end.
	stop = context.AfterFunc(ctx, p.wake)
	p.run(false)
	return true
}

// parkBroker goes on copying broker to the client in a pump once the
// handler let go of the stream, and reports whether it does; the relay's
// result then goes to the handler when the pump ends.
func (d *Dialer) parkBroker(ctx context.Context, ps park.Stream, client, broker net.Conn, node *node, up *clientSide) bool {
	if ps == nil {
		return false
	}
	rc, ok := park.RawConn(broker)
	if !ok {
		return false
	}
	finish, ok := ps.Detach(d)
	if !ok {
		return false
	}
	var brokerErr error
	clientGone := false
	p := newPump(rc, &pump{
		buffered: func() bool { return false },
		// Once the client's side ended, the broker is given brokerLinger to
		// close in turn: read on, within that deadline.
		mayPark: func() bool {
			up.mu.Lock()
			defer up.mu.Unlock()
			return !up.over
		},
		step: func() bool {
			buf := d.largeBuffer()
			defer d.largeBuffers.Put(buf)
			n, err := broker.Read(*buf)
			if n > 0 {
				if _, werr := client.Write((*buf)[:n]); werr != nil {
					clientGone = true
					return false
				}
			}
			if errors.Is(err, io.EOF) {
				return false
			}
			brokerErr = err
			return err == nil
		},
		end: func() {
			finish(d.endRelay(ctx, client, broker, node, up, brokerErr, clientGone, time.Now()))
		},
	})
	if p == nil {
		// Detached already: serve on in a goroutine of our own.
		go func() {
			buf := make([]byte, smallCopySize)
			brokerErr, werr := d.copyStream(client, broker, buf, nil)
			finish(d.endRelay(ctx, client, broker, node, up, brokerErr, werr != nil, time.Now()))
		}()
		return true
	}
	up.mu.Lock()
	up.brokerPump = p
	up.mu.Unlock()
	p.run(false)
	return true
}
