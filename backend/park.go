package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/internal/park"
)

// A relay whose client is an mqttws stream over plain TCP, and whose broker
// connection is plain TCP or a unix socket, copies each way with a pump
// instead of a goroutine blocked in Read for the connection's life (on
// linux: see package park): an idle connection then holds no goroutine, no
// stack and no copy buffer. A pump runs a goroutine while its side has
// bytes to copy, and for pumpLinger after the last ones, so that a busy
// connection goes on as a goroutine would (Go's netpoller wakes it, at no
// extra cost per packet); it parks once its side was idle that long, and
// while parked, bytes arriving start a goroutine again.

// pumpLinger is how long a side waits for more bytes, in a goroutine,
// before it parks.
const pumpLinger = 20 * time.Millisecond

// pumpState is where a pump is.
type pumpState uint8

const (
	pumpRunning pumpState = iota // a goroutine copies
	pumpParked                   // waiting for bytes, in the epoll set
	pumpDone                     // the side ended
)

// pumpSide is the copy a pump runs.
type pumpSide interface {
	// step reads once and writes what it read. While linger is set, reads
	// wait under a deadline set pumpLinger ahead once per lingering window
	// (so a side parks 20 to 40 ms after its last bytes), and step then
	// reports idle when nothing came in the window. It reports !ok once the side ended.
	step(linger bool) (idle, ok bool)
	// mayPark reports whether the side may park, with the pump's mu held:
	// a side that must meet its end soon reads on, within a deadline.
	mayPark() bool
	// end runs once, after the last step.
	end()
	// crashed is told that step panicked with v: it closes the relay's
	// connections (the client's stream with 1011), so that both sides end.
	crashed(v any)
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

// run copies until its side has been idle for pumpLinger, then parks.
func (p *pump) run() {
	for {
		p.mu.Lock()
		linger := !p.blocking && p.side.mayPark()
		p.again = false
		p.mu.Unlock()
		idle, ok := p.step(linger)
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

// step runs the side's step. A panic in it (a bug) ends the relay, as
// the handler's recover ends a Backend that panics, instead of the process.
func (p *pump) step(linger bool) (idle, ok bool) {
	defer func() {
		if v := recover(); v != nil {
			p.side.crashed(v)
			idle, ok = false, false
		}
	}()
	return p.side.step(linger)
}

// abort ends a relay whose pump panicked with v: the client's stream
// closes with 1011, the broker's connection closes, and both sides meet
// their ends. It returns the error the side ends with.
func (r *parkedRelay) abort(v any) error {
	if s, ok := r.client.(*mqttws.Stream); ok {
		_ = s.CloseWith(mqttws.CloseInternalError, "internal error")
	} else {
		_ = r.client.Close()
	}
	for _, b := range []net.Conn{r.toBroker, r.broker} {
		if b != nil {
			_ = b.Close()
		}
	}
	return fmt.Errorf("backend: the relay panicked: %v", v)
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

// parking returns the stream to park the relay of client with, or nil. A
// relay parks only when the Dialer is the handler's Backend itself: a
// parked client side wakes when the context ServeStream was handed ends,
// and only the handler's own context is sure to end when the stream
// closes (a Backend wrapping the Dialer may hand on one that never does).
func (d *Dialer) parking(client net.Conn) park.Stream {
	if !park.Supported || d.TLSConfig != nil {
		return nil
	}
	ps, ok := park.Lookup(client)
	if !ok || !ps.Serves(d) {
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

	// Each side lingers for pumpLinger in a blocking read before it parks.
	lingering, active, large    bool // the client's side: a deadline is set; bytes came since; reads go to a large buffer
	bLingering, bActive, bLarge bool // the broker's side's
}

// largeNext tells whether the read after one of n bytes, into a large
// buffer or not, goes to a large buffer: as in copyStream, from a small
// read that filled its buffer until a large one that would have fit in a
// small one.
func largeNext(large bool, n int) bool {
	if large {
		return n > smallCopySize
	}
	return n == smallCopySize
}

// pumpBuffer returns a copy buffer from the Dialer's pools, and the pool it
// goes back to: a large one while data streams (see largeNext), a small
// one otherwise, so that the sides lingering for more bytes hold 512 bytes
// each, not 16 KiB.
func (d *Dialer) pumpBuffer(large bool) (*[]byte, *sync.Pool) {
	if large {
		return d.largeBuffer(), &d.largeBuffers
	}
	if b, ok := d.smallBuffers.Get().(*[]byte); ok {
		return b, &d.smallBuffers
	}
	b := make([]byte, smallCopySize)
	return &b, &d.smallBuffers
}

// clientPump is the client's side of a parked relay: stream to broker.
type clientPump parkedRelay

// brokerPump is the broker's side of a parked relay: broker to stream.
type brokerPump parkedRelay

func (c *clientPump) step(linger bool) (idle, ok bool) {
	if !c.lingerUntil(linger) {
		return true, true
	}
	buf, pool := c.d.pumpBuffer(c.large)
	defer pool.Put(buf)
	n, err := c.client.Read(*buf)
	c.large = largeNext(c.large, n)
	if n > 0 {
		c.active = true
		if c.tracker != nil {
			c.tracker.feed((*buf)[:n])
		}
		if c.up.bounded.Load() {
			boundBrokerWrite(c.toBroker)
		}
		if _, werr := c.toBroker.Write((*buf)[:n]); werr != nil {
			c.writeErr = werr
			return false, false
		}
	}
	if linger && isTimeout(err) {
		return c.lingered(), true
	}
	return false, err == nil
}

// lingerUntil sets the read deadline that ends a lingering read, once per
// pumpLinger, or clears it once the pump no longer lingers. It reports
// false when the stream began closing meanwhile: the pump must look again.
func (c *clientPump) lingerUntil(linger bool) bool {
	switch {
	case linger && !c.lingering:
		c.lingering, c.active = true, false
		_ = c.client.SetReadDeadline(time.Now().Add(pumpLinger))
		if c.ctx.Err() != nil {
			// CloseWith may have set its deadline before this one: the
			// close's timer bounds the reads from now on.
			_ = c.client.SetReadDeadline(time.Time{})
			c.lingering = false
			return false
		}
	case !linger && c.lingering:
		c.lingering = false
		_ = c.client.SetReadDeadline(time.Time{}) // the close's timer bounds the reads
	}
	return true
}

// lingered handles the end of a lingering read: it reports whether the
// side was idle for pumpLinger, and may park.
func (c *clientPump) lingered() (idle bool) {
	c.lingering = false
	if c.active {
		return false // bytes moved meanwhile: linger on
	}
	_ = c.client.SetReadDeadline(time.Time{})
	return true
}

// mayPark: once the stream is closing, nothing would wake a parked pump
// when the connection closes; it reads on, within the close's deadline.
func (c *clientPump) mayPark() bool { return c.ctx.Err() == nil }

// streamEnded wakes the client's pump once the stream ended, and bounds
// its writes to the broker (see clientSide.bound).
func (r *parkedRelay) streamEnded() {
	r.up.bound(r.toBroker)
	r.cp.Ready()
}

func (c *clientPump) crashed(v any) { c.writeErr = (*parkedRelay)(c).abort(v) }

func (c *clientPump) end() {
	c.stop()
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
	// close by the broker's side): the pump must then meet the end, even
	// from within a write to a broker that stopped reading.
	r.stop = afterStreamEnds(ctx, r.streamEnded)
	r.cp.run()
	return true
}

func (b *brokerPump) step(linger bool) (idle, ok bool) {
	if linger && !b.bLingering {
		b.up.mu.Lock()
		if !b.up.over { // else the client's end set brokerLinger's deadline
			b.bLingering, b.bActive = true, false
			_ = b.broker.SetReadDeadline(time.Now().Add(pumpLinger))
		}
		b.up.mu.Unlock()
	}
	buf, pool := b.d.pumpBuffer(b.bLarge)
	defer pool.Put(buf)
	n, err := b.broker.Read(*buf)
	b.bLarge = largeNext(b.bLarge, n)
	if n > 0 {
		b.bActive = true
		if _, werr := b.client.Write((*buf)[:n]); werr != nil {
			b.gone = true
			return false, false
		}
	}
	if linger && isTimeout(err) {
		b.bLingering = false
		if b.bActive {
			return false, true
		}
		b.up.mu.Lock()
		defer b.up.mu.Unlock()
		if !b.up.over {
			// Once the client's side ended, its brokerLinger deadline
			// stays; until then the deadline is the pump's own.
			_ = b.broker.SetReadDeadline(time.Time{})
		}
		return true, true
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

func (b *brokerPump) crashed(v any) { b.readErr = (*parkedRelay)(b).abort(v) }

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
			readErr, werr := d.copyStream(r.client, broker, buf, nil, nil)
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
