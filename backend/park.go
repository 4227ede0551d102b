package backend

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/mqttws/mqttws/internal/park"
)

// A relay whose client is an mqttws stream over plain TCP, and whose broker
// connection is plain TCP or a unix socket, copies each way with a pump
// instead of a goroutine blocked in Read (on linux: see package park): an
// idle connection then holds no goroutine, no stack and no copy buffer. A
// pump runs a goroutine only while its side has bytes to copy, reading
// without waiting until none are left, or while its side meets its end.

// pumpState is where a pump is.
type pumpState uint8

const (
	pumpRunning pumpState = iota // a goroutine copies
	pumpParked                   // waiting for bytes, in the epoll set
	pumpDone                     // the side ended
)

// pumpSide is the copy a pump runs.
type pumpSide interface {
	// step reads once and writes what it read: without waiting for bytes
	// while nonblocking, when it reports idle once none are left. It
	// reports !ok once the side ended.
	step(nonblocking bool) (idle, ok bool)
	// mayPark reports whether the side may park, with the pump's mu held:
	// a side that must meet its end soon reads on, within a deadline.
	mayPark() bool
	// end runs once, after the last step.
	end()
}

// pump runs one side of a parked relay.
type pump struct {
	w    park.Waiter
	side pumpSide

	mu       sync.Mutex
	state    pumpState
	again    bool // woken while running: look again before parking
	blocking bool // the epoll set failed: read as a goroutine would
}

// init registers a running pump of side on rc; it reports false when rc
// cannot be waited for.
func (p *pump) init(rc syscall.RawConn, side pumpSide) bool {
	p.side = side
	return p.w.Init(rc, p) == nil
}

// Ready runs the pump: bytes came, or its side must meet an end.
func (p *pump) Ready() {
	p.mu.Lock()
	switch p.state {
	case pumpParked:
		p.state = pumpRunning
		p.mu.Unlock()
		go p.run()
	case pumpRunning:
		p.again = true
		p.mu.Unlock()
	default:
		p.mu.Unlock()
	}
}

// run copies until no byte is waiting, then parks.
func (p *pump) run() {
	for {
		p.mu.Lock()
		nonblocking := !p.blocking && p.side.mayPark()
		p.again = false
		p.mu.Unlock()
		idle, ok := p.side.step(nonblocking)
		if !ok {
			p.mu.Lock()
			p.state = pumpDone
			p.mu.Unlock()
			p.w.Close()
			p.side.end()
			return
		}
		if idle && p.park() {
			return
		}
	}
}

// park parks the pump unless it was woken meanwhile or may not park; it
// reports whether it did, after which the goroutine must return.
func (p *pump) park() bool {
	p.mu.Lock()
	if p.again || p.blocking || !p.side.mayPark() {
		p.mu.Unlock()
		return false
	}
	p.state = pumpParked
	p.mu.Unlock()
	if p.w.Arm() == nil {
		return true
	}
	// The connection is closed (reading on meets the end), or the epoll set
	// failed (reading on waits as a goroutine would).
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != pumpParked {
		return true // woken meanwhile: that goroutine runs the pump
	}
	p.state = pumpRunning
	p.blocking = true
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

// parkedRelay is what the two pumps of a parked relay hold, in one
// allocation with the relay's clientSide: an idle connection costs little
// more than its two sockets and its stream.
type parkedRelay struct {
	d        *Dialer
	ctx      context.Context
	ps       park.Stream
	client   net.Conn
	toBroker net.Conn       // the client's side's broker connection
	broker   net.Conn       // the broker's side's: the same one
	tracker  *packetTracker // the client's packets, when watched
	node     *node          // the broker's
	stop     func() bool    // of the context.AfterFunc that wakes the client's pump
	finish   func(error)    // hands the relay's result to the handler
	up       *clientSide
	writeErr error // that ended the client's side
	readErr  error // that ended the broker's side
	gone     bool  // the client's stream failed a write
	cp, bp   pump  // the client's and the broker's
}

// clientPump is the client's side of a parked relay: stream to broker.
type clientPump parkedRelay

// brokerPump is the broker's side of a parked relay: broker to stream.
type brokerPump parkedRelay

func (c *clientPump) step(nonblocking bool) (idle, ok bool) {
	c.ps.SetNonblocking(nonblocking)
	buf := c.d.largeBuffer()
	defer c.d.largeBuffers.Put(buf)
	n, err := c.client.Read(*buf)
	if n > 0 {
		if c.tracker != nil {
			c.tracker.feed((*buf)[:n])
		}
		if _, werr := c.toBroker.Write((*buf)[:n]); werr != nil {
			c.writeErr = werr
			return false, false
		}
	}
	if nonblocking && errors.Is(err, park.ErrWouldBlock) {
		return true, true
	}
	return false, err == nil
}

// mayPark: once the stream is closing, nothing would wake a parked pump
// when the connection closes; it reads on, within the close's deadline.
func (c *clientPump) mayPark() bool { return c.ctx.Err() == nil }

func (c *clientPump) end() {
	c.stop()
	c.ps.SetNonblocking(false) // the handler reads up to the client's close reply
	c.d.clientEnded(c.toBroker, c.writeErr, c.up)
	c.up.finish()
}

// parkClient goes on copying the client to broker in a pump, and reports
// whether it does; the client's side of the relay then ends in the pump.
func (d *Dialer) parkClient(broker net.Conn, tracker *packetTracker, up *clientSide) bool {
	ps, ctx := up.parked.ps, up.parked.ctx
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
	r := &up.parked
	r.toBroker, r.tracker = broker, tracker
	c := (*clientPump)(r)
	if !r.cp.init(rc, c) {
		return false
	}
	// The stream's context ends when it closes (keepalive, Shutdown, a
	// close by the broker's side): the pump must then meet the end.
	if af, ok := ctx.(interface{ AfterFunc(func()) func() bool }); ok {
		r.stop = af.AfterFunc(r.cp.Ready) // the handler's: no goroutine, no child context
	} else {
		r.stop = context.AfterFunc(ctx, r.cp.Ready)
	}
	r.cp.run()
	return true
}

func (b *brokerPump) step(nonblocking bool) (idle, ok bool) {
	buf := b.d.largeBuffer()
	defer b.d.largeBuffers.Put(buf)
	var n int
	var err error
	if nonblocking {
		n, err = park.ReadNow(b.bp.w.RawConn(), *buf)
		if errors.Is(err, park.ErrWouldBlock) {
			return true, true
		}
		var se *os.SyscallError
		if errors.As(err, &se) {
			err = &net.OpError{Op: "read", Net: b.broker.LocalAddr().Network(), Source: b.broker.LocalAddr(), Addr: b.broker.RemoteAddr(), Err: err}
		}
	} else {
		n, err = b.broker.Read(*buf)
	}
	if n > 0 {
		if _, werr := b.client.Write((*buf)[:n]); werr != nil {
			b.gone = true
			return false, false
		}
	}
	if errors.Is(err, io.EOF) {
		return false, false
	}
	b.readErr = err
	return false, err == nil
}

// mayPark: once the client's side ended, the broker is given brokerLinger
// to close in turn; the pump reads on, within that deadline.
func (b *brokerPump) mayPark() bool {
	b.up.mu.Lock()
	defer b.up.mu.Unlock()
	return !b.up.over
}

func (b *brokerPump) end() {
	b.finish(b.d.endRelay(b.ctx, b.client, b.broker, b.node, b.up, b.readErr, b.gone, time.Now()))
}

// parkBroker goes on copying broker to the client in a pump once the
// handler let go of the stream, and reports whether it does; the relay's
// result then goes to the handler when the pump ends.
func (d *Dialer) parkBroker(broker net.Conn, node *node, up *clientSide) bool {
	ps, ctx := up.parked.ps, up.parked.ctx
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
	r := &up.parked
	r.broker, r.node, r.finish = broker, node, finish
	if !r.bp.init(rc, (*brokerPump)(r)) {
		// Detached already: serve on in a goroutine of our own.
		go func() {
			buf := make([]byte, smallCopySize)
			readErr, werr := d.copyStream(r.client, broker, buf, nil)
			finish(d.endRelay(ctx, r.client, broker, node, up, readErr, werr != nil, time.Now()))
		}()
		return true
	}
	// From now on the client's side's end wakes the pump; if it ended
	// already, the pump does not park (mayPark).
	up.mu.Lock()
	up.brokerParked = true
	up.mu.Unlock()
	r.bp.run()
	return true
}
