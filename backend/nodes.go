package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/pires/go-proxyproto"
)

// node is what a Dialer knows of one of its Addresses.
type node struct {
	address string

	mu        sync.Mutex
	down      bool
	since     time.Time // when down last changed; zero if it never did
	err       error     // why the node went down
	probing   bool      // an MQTT probe is under way
	lastProbe time.Time // when the last MQTT probe started

	// The check of whether the node still accepts connections, after a
	// broker connection ended unasked.
	check   chan struct{} // closed when the check under way ends; nil if none
	aliveAt time.Time     // when the last check connected
	deadAt  time.Time     // when the last check failed
}

// NodeState is what a Dialer knows of one of its Addresses.
type NodeState struct {
	Address string
	// Down tells a node that failed (see Dialer) and has not answered a
	// probe since; new streams go to it only when every node is down.
	Down bool
	// Since is when Down last changed; zero if the node never went down.
	Since time.Time
	// Err is why the node last went down.
	Err error
}

// Nodes returns the state of each of the Dialer's Addresses, in order.
func (d *Dialer) Nodes() []NodeState {
	nodes := d.nodeList()
	states := make([]NodeState, len(nodes))
	for i, n := range nodes {
		n.mu.Lock()
		states[i] = NodeState{Address: n.address, Down: n.down, Since: n.since, Err: n.err}
		n.mu.Unlock()
	}
	return states
}

// nodeList returns a node per address, made on first use.
func (d *Dialer) nodeList() []*node {
	d.nodesMu.Lock()
	defer d.nodesMu.Unlock()
	if len(d.nodes) != len(d.Addresses) {
		d.nodes = make([]*node, len(d.Addresses))
		for i, a := range d.Addresses {
			d.nodes[i] = &node{address: a}
		}
	}
	return d.nodes
}

// route returns the nodes in the order a new stream tries them: those that
// are up, starting at the next in turn; all of them when every node is
// down. It starts the probes of down nodes that are due.
func (d *Dialer) route() []*node {
	nodes := d.nodeList()
	if len(nodes) == 0 {
		return nil
	}
	route := make([]*node, 0, len(nodes))
	down := make([]bool, len(nodes))
	up := 0
	if d.ProbeInterval >= 0 {
		for i, n := range nodes {
			n.mu.Lock()
			down[i] = n.down
			n.mu.Unlock()
			if !down[i] {
				up++
			}
		}
	} else {
		up = len(nodes)
	}
	if up == 0 { // every node is down: try them all, in turn
		start := int(d.next.Add(1)-1) % len(nodes)
		for i := range nodes {
			route = append(route, nodes[(start+i)%len(nodes)])
		}
		return route
	}
	// The k-th node up starts the route, for the k that comes in turn.
	k := int((d.next.Add(1) - 1) % uint32(up))
	start := 0
	for i := range nodes {
		if !down[i] {
			if k == 0 {
				start = i
				break
			}
			k--
		}
	}
	for i := range nodes {
		if j := (start + i) % len(nodes); !down[j] {
			route = append(route, nodes[j])
		}
	}
	for i, n := range nodes {
		if down[i] {
			d.probeIfDue(n)
		}
	}
	return route
}

// markDown marks n down for err, logging it when n was up.
func (d *Dialer) markDown(n *node, err error) {
	n.mu.Lock()
	was := n.down
	n.down, n.err = true, err
	if !was {
		n.since = time.Now()
		// A node found down is probed one interval later, not at once.
		n.lastProbe = n.since
	}
	n.mu.Unlock()
	if !was {
		d.logger().Warn("backend: broker node down", "address", n.address, "err", err.Error())
	}
}

// markUp marks n up, logging it when n was down.
func (d *Dialer) markUp(n *node, why string) {
	n.mu.Lock()
	was := n.down
	var downFor time.Duration
	if was {
		now := time.Now()
		downFor = now.Sub(n.since)
		n.down, n.since = false, now
	}
	n.mu.Unlock()
	if was {
		d.logger().Info("backend: broker node up", "address", n.address, "down_for", downFor.Round(time.Millisecond), "why", why)
	}
}

func (d *Dialer) logger() *slog.Logger {
	if d.Logger != nil {
		return d.Logger
	}
	return slog.Default()
}

func (d *Dialer) probeInterval() time.Duration {
	return orDefault(d.ProbeInterval, DefaultProbeInterval)
}

// probeIfDue starts a probe of n, a node marked down, unless one runs or
// ran less than ProbeInterval ago.
func (d *Dialer) probeIfDue(n *node) {
	n.mu.Lock()
	due := n.down && !n.probing && time.Since(n.lastProbe) >= d.probeInterval()
	if due {
		n.probing, n.lastProbe = true, time.Now()
	}
	n.mu.Unlock()
	if due {
		go d.probe(n)
	}
}

// probeConnect is the CONNECT of a probe: MQTT 3.1.1, a clean session, no
// keepalive and an empty client id, which the broker either accepts with one
// of its own or refuses with a CONNACK: either way it answers.
var probeConnect = []byte{0x10, 0x0c, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x00, 0x00, 0x00}

// disconnect is an MQTT DISCONNECT packet.
var disconnect = []byte{0xe0, 0x00}

// probe sends n an MQTT CONNECT and marks it up once it answers, within
// Timeout for the dial and ConnackTimeout (or Timeout, when that is
// negative) for the answer.
func (d *Dialer) probe(n *node) {
	defer func() {
		n.mu.Lock()
		n.probing = false
		n.mu.Unlock()
	}()
	answerTimeout := d.connackTimeout()
	if answerTimeout == 0 {
		answerTimeout = d.dialTimeout()
	}
	c, nerr := d.dialOne(context.Background(), n.address)
	if nerr != nil {
		d.markDown(n, nerr)
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(answerTimeout))
	if err := d.sendProbe(c); err != nil {
		d.markDown(n, &nodeError{network: d.network(), address: n.address, step: "MQTT probe of", err: err})
		return
	}
	var answer [1]byte
	if _, err := io.ReadFull(c, answer[:]); err != nil {
		e := &nodeError{network: d.network(), address: n.address, step: "MQTT probe of", err: err}
		if isTimeout(err) {
			e.timeout = answerTimeout
		}
		d.markDown(n, e)
		return
	}
	_, _ = c.Write(disconnect)
	d.markUp(n, "answered a probe")
}

// sendProbe writes a probe's PROXY protocol header, if any, and CONNECT.
func (d *Dialer) sendProbe(c io.Writer) error {
	if d.ProxyProtocol > 0 {
		// v1 writes it as "PROXY UNKNOWN".
		h := &proxyproto.Header{Version: byte(d.ProxyProtocol), Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}
		if _, err := h.WriteTo(c); err != nil {
			return err
		}
	}
	_, err := c.Write(probeConnect)
	return err
}

// wentAway reports whether n no longer accepts connections after one of its
// broker connections ended unasked at endedAt: a crash or a shutdown, not a
// broker's own decision to close a client. It dials n (one dial at a time
// per node, shared by the streams that wait for it, which take the answer of
// a dial made after their end) and marks n down when the dial fails. A node
// already marked down went away.
func (d *Dialer) wentAway(ctx context.Context, n *node, endedAt time.Time) bool {
	if n == nil {
		return false
	}
	for {
		n.mu.Lock()
		switch {
		case n.down:
			n.mu.Unlock()
			return true
		case n.aliveAt.After(endedAt):
			n.mu.Unlock()
			return false
		case n.deadAt.After(endedAt):
			n.mu.Unlock()
			return true
		}
		if n.check == nil {
			n.check = make(chan struct{})
			go d.checkAccepts(n, n.check)
		}
		check := n.check
		n.mu.Unlock()
		select {
		case <-check:
		case <-ctx.Done():
			return false
		}
	}
}

// acceptCheckWindow is how long a check's connection must stay open for
// the node to count as up. A broker killed with SIGKILL may have its
// connections closed a moment before its listener (the kernel closes a
// process's descriptors in numeric order, and a connection may have taken a
// lower number than the listener); once the listener closes, a connection
// it accepted but nobody took is reset. A live broker waits for a CONNECT.
const acceptCheckWindow = 250 * time.Millisecond

// errClosedAtOnce is why a check failed whose connection was closed within
// acceptCheckWindow.
var errClosedAtOnce = errors.New("connection closed at once")

// checkAccepts dials n once, records whether it accepted a connection that
// stayed open for acceptCheckWindow, and closes done.
func (d *Dialer) checkAccepts(n *node, done chan struct{}) {
	c, nerr := d.dialOne(context.Background(), n.address)
	var err error
	if nerr != nil {
		err = nerr
	} else {
		_ = c.SetReadDeadline(time.Now().Add(acceptCheckWindow))
		k, rerr := c.Read(make([]byte, 1))
		_ = c.Close()
		if k == 0 && !isTimeout(rerr) {
			err = &nodeError{network: d.network(), address: n.address, step: "connection to", err: fmt.Errorf("%w: %v", errClosedAtOnce, rerr)}
		}
	}
	if err != nil {
		d.markDown(n, err)
	}
	now := time.Now()
	n.mu.Lock()
	if err == nil {
		n.aliveAt = now
	} else {
		n.deadAt = now
	}
	n.check = nil
	n.mu.Unlock()
	close(done)
}
