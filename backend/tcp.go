// Package backend holds the mqttws backend that relays each stream to an
// existing broker: over TCP, TLS or a unix socket, to one broker or to the
// nodes of a cluster, optionally announcing the client's address with a
// PROXY protocol header.
package backend

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttws/mqttws"
)

// DefaultDialTimeout bounds a dial to one broker node when Dialer.Timeout is
// zero. It is well under the handler's FirstDataTimeout, so that a node that
// does not answer costs a client a few seconds, not its connection.
const DefaultDialTimeout = 3 * time.Second

// DefaultConnectTimeout bounds the wait for a client's whole CONNECT packet
// when Dialer.ConnectTimeout is zero. It is the same as mochi's.
const DefaultConnectTimeout = 10 * time.Second

// DefaultConnackTimeout bounds the wait for a broker node's answer to a
// client's CONNECT when Dialer.ConnackTimeout is zero. Brokers answer in
// milliseconds, but a cluster electing leaders after a node's loss may take
// seconds on every node: NATS Server answers, or closes the connection,
// after up to its 5s JetStream API timeout. Longer than that, a node is only
// taken for hung when it is.
const DefaultConnackTimeout = 10 * time.Second

// DefaultProbeInterval is how often a node marked down is probed when
// Dialer.ProbeInterval is zero.
const DefaultProbeInterval = 2 * time.Second

// Dialer is a Backend that dials a broker for every stream and copies bytes
// both ways, like a TCP proxy: each WebSocket connection becomes one
// connection to the broker.
//
// With several Addresses, the nodes of a cluster, the Dialer keeps track of
// which answer. A node is marked down when a dial to it fails or times out
// (Timeout), when it accepts a connection but does not answer a client's
// CONNECT within ConnackTimeout (a hung node), and when one of its broker
// connections ends unasked and a new connection to it fails (a crash). New
// streams go only to the nodes that are up, in turn; a stream whose node
// fails before its first byte reached the client goes on to the next node
// that is up, its CONNECT sent again, so a client waits at most Timeout and
// ConnackTimeout per node. Nodes marked down are probed every ProbeInterval
// with an MQTT CONNECT and come back once one is answered. When every node
// is down, streams try them all.
//
// Close codes: when the client sent DISCONNECT or closed its side, or when
// the broker closed the connection while its node still takes new ones (a
// refused CONNECT, a client id taken over, a packet it refused), the
// client's WebSocket closes with 1000. When the broker closes it, or resets
// it, without the client asking, and a new connection to its node fails
// (refused, or closed within 250ms: the broker crashed, stopped or
// restarts), it closes with 1012 (Service Restart) and the reason "broker
// went away", and the handler's log line carries the Dialer's error, which
// names the node: "backend: broker tcp 10.0.0.7:1883 went away: it closed
// the connection unasked, and a new connection to it fails". The client
// should reconnect: the Dialer sends it to a node that is up. When the
// connection breaks while the node is still there, it closes with 1011;
// when no node can be reached or none answers the CONNECT, with 1013 (Try
// Again Later). A client's close half-closes the broker's connection. Once
// the client's stream ended, a write to a broker that stopped reading (a
// hung process) waits 5s at most, and the log line says the broker
// "stopped reading". A
// client whose first MQTT packet is not a CONNECT gets 1002, and one whose
// CONNECT is not whole within ConnectTimeout gets 1008.
//
// The exported fields must not change once the Dialer serves streams.
type Dialer struct {
	// Network is "tcp" (the default), "tcp4", "tcp6" or "unix".
	Network string
	// Addresses are the broker's "host:port" (a socket path for "unix"), or
	// those of the nodes of a broker cluster (EMQX, VerneMQ, HiveMQ, NATS
	// Server…). Each stream starts at the next node that is up, in turn,
	// spreading clients over the nodes, and goes on to the following ones
	// when a node refuses, times out or does not answer the CONNECT, so a
	// node's loss costs its clients one reconnect.
	Addresses []string
	// TLSConfig, when not nil, makes the connections to the broker TLS.
	TLSConfig *tls.Config
	// Timeout bounds the dial (and TLS handshake) to each node; past it the
	// node is marked down and the next one tried, while the client's CONNECT
	// waits in the stream. Zero or negative means DefaultDialTimeout (3s).
	Timeout time.Duration
	// ConnectTimeout bounds the time from the start of the stream to the
	// last byte of the client's MQTT CONNECT packet, so that a client that
	// never speaks MQTT cannot hold a broker connection: past it the stream
	// closes with ClosePolicyViolation (1008). A first packet that is not a
	// CONNECT, or whose Remaining Length is malformed, closes it at once
	// with CloseProtocolError (1002); none of its bytes reach the broker.
	// The broker is dialed while the CONNECT is read, so that the two
	// overlap; a client whose bytes fill the 512-byte copy buffer before the
	// broker answers waits for it, and that wait does not count against the
	// client. Once the CONNECT has gone by, the relay only follows the
	// packets' fixed headers, to tell a DISCONNECT. Zero means
	// DefaultConnectTimeout; negative means none, and no byte is looked at:
	// ConnackTimeout does not apply then, and a broker's close is told from
	// its going away only by whether its node still accepts connections.
	ConnectTimeout time.Duration
	// ConnackTimeout bounds the wait for the broker's first byte (its
	// CONNACK) once the client's whole CONNECT was sent to a node. Past it
	// the node is taken for hung: its connection is dropped, it is marked
	// down, and the CONNECT (kept while it is at most 16 KiB) is sent to the
	// next node; nothing reached the client yet, so that is safe. A node that
	// closes the connection before answering gets the same treatment, but
	// is not marked down. Keep it under the clients' own connect timeouts
	// (30s in paho and MQTT.js). Zero means DefaultConnackTimeout (10s);
	// negative means no deadline, and a CONNECT is never sent again.
	ConnackTimeout time.Duration
	// ProbeInterval is how often a node marked down is probed, with a
	// CONNECT of an empty client id and a clean session, answered within
	// ConnackTimeout; the probe runs when a new stream comes while the node
	// is down, so an idle Dialer sends none. Zero means DefaultProbeInterval
	// (2s); negative turns node tracking off: every stream tries the nodes
	// in turn, down or not.
	ProbeInterval time.Duration
	// ProxyProtocol, when 1 or 2, starts each broker connection with a PROXY
	// protocol header of that version (HAProxy's PROXY protocol), giving the
	// client's address (Stream.RemoteAddr, which honors the handler's
	// TrustedProxies) so that the broker logs and authorizes the real
	// client; probes send a LOCAL header (v2) or "PROXY UNKNOWN" (v1). The
	// broker must expect it. Zero sends none.
	ProxyProtocol int
	// Logger receives a line when a node goes down (warning level, with the
	// cause) and when it comes back (info level). Nil means slog.Default().
	Logger *slog.Logger

	next         atomic.Uint32 // the live node the next stream starts at
	largeBuffers sync.Pool     // of *[]byte of largeCopySize
	smallBuffers sync.Pool     // of *[]byte of smallCopySize, for parked relays
	nodesMu      sync.Mutex
	nodes        []*node // one per address, built on first use
}

// Dial returns a Dialer for a broker at a TCP address ("host:port"), or for
// the nodes of a cluster.
func Dial(addresses ...string) *Dialer { return &Dialer{Addresses: addresses} }

// ServeStream dials the broker and relays conn to it until both directions
// end. The dial runs while the client's CONNECT is read and checked (see
// ConnectTimeout). On Linux, when the Dialer is the Handler's Backend
// itself and both connections are plain sockets, an idle relay holds no
// goroutine: ServeStream may then return early, with an error the Handler
// knows, and the Handler ends the stream when the relay does.
func (d *Dialer) ServeStream(ctx context.Context, conn net.Conn) error {
	if d.ProxyProtocol < 0 || d.ProxyProtocol > 2 {
		return fmt.Errorf("backend: ProxyProtocol %d: want 0, 1 or 2", d.ProxyProtocol)
	}
	var watch *connectWatch
	if timeout := orDefault(d.ConnectTimeout, DefaultConnectTimeout); timeout > 0 {
		// Set before the dial starts, so that a failed dial's wake-up call
		// (below) cannot be overwritten.
		watch = &connectWatch{timeout: timeout, deadline: time.Now().Add(timeout)}
		if err := conn.SetReadDeadline(watch.deadline); err != nil {
			return fmt.Errorf("backend: set CONNECT deadline: %w", err)
		}
	}
	dialCtx, cancelDial := cancelable(ctx)
	defer cancelDial()
	b := &pendingBroker{done: make(chan struct{}), route: d.route(), failed: &dialError{}}
	go func() {
		defer close(b.done)
		b.conn, b.node, b.err = d.connect(dialCtx, conn, b)
		if b.err != nil && watch != nil {
			// The CONNECT watch may be blocked reading the client: the
			// broker's failure decides now, not the client's next byte.
			_ = conn.SetReadDeadline(aLongTimeAgo)
		}
	}()
	return d.relay(ctx, conn, b, watch, cancelDial)
}

// afterFuncer is a context with an AfterFunc method of its own, as the
// Handler's stream context has (see context.AfterFunc).
type afterFuncer interface {
	AfterFunc(f func()) (stop func() bool)
}

// afterStreamEnds arranges for f to run once ctx ends, as
// context.AfterFunc does, through the Handler's stream context's own
// AfterFunc when it has one: no child context, no goroutine waiting.
func afterStreamEnds(ctx context.Context, f func()) (stop func() bool) {
	if af, ok := ctx.(afterFuncer); ok {
		return af.AfterFunc(f)
	}
	return context.AfterFunc(ctx, f)
}

// cancelable returns a context with ctx's values, canceled when ctx is or
// when the function returned is called. The Handler's stream context is not
// asked for a Done channel, which context.WithCancel would make and the
// stream would keep for its life (112 bytes per idle connection): the
// cancellation is registered with its AfterFunc method instead. Any other
// context, and one with a deadline (which context.WithoutCancel would drop),
// goes through context.WithCancel.
func cancelable(ctx context.Context) (context.Context, context.CancelFunc) {
	af, ok := ctx.(afterFuncer)
	if _, hasDeadline := ctx.Deadline(); !ok || hasDeadline {
		return context.WithCancel(ctx)
	}
	c, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := af.AfterFunc(cancel)
	return c, func() {
		stop()
		cancel()
	}
}

// aLongTimeAgo is a read deadline that ends a blocked read at once.
var aLongTimeAgo = time.Unix(1, 0)

// pendingBroker is the broker connection being dialed: conn, node and err
// are set once done is closed. route and tried are the dial's, then the
// relay's once done is closed, when it sends the CONNECT to another node.
type pendingBroker struct {
	done chan struct{}
	conn net.Conn
	node *node
	err  error

	route  []*node    // the nodes in the order this stream tries them
	tried  int        // how many of route were tried
	failed *dialError // why those that failed did
}

// dialed reports whether the dial is over.
func (b *pendingBroker) dialed() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// connect dials the next node of b's route that answers and sends the PROXY
// protocol header, if any. Its errors are *mqttws.CloseError: 1013 when no
// node answered, 1011 when the header could not be sent.
func (d *Dialer) connect(ctx context.Context, client net.Conn, b *pendingBroker) (net.Conn, *node, error) {
	if len(b.route) == 0 {
		err := errors.New("backend: Dialer has no Addresses")
		return nil, nil, &mqttws.CloseError{Code: mqttws.CloseTryAgainLater, Reason: "broker unreachable", Err: err}
	}
	broker, n := d.dialNext(ctx, b)
	if broker == nil {
		return nil, nil, &mqttws.CloseError{Code: mqttws.CloseTryAgainLater, Reason: "broker unreachable", Err: b.failed}
	}
	if d.ProxyProtocol > 0 {
		if err := writeProxyHeader(broker, d.ProxyProtocol, client); err != nil {
			_ = broker.Close()
			return nil, nil, &mqttws.CloseError{Code: mqttws.CloseInternalError, Reason: "broker connection failed", Err: err}
		}
	}
	return broker, n, nil
}

// dialNext dials the nodes of b's route that were not tried yet, in order,
// until one accepts the connection; it marks down those that fail and
// records why in b.failed. It returns nil when none accepted, or ctx ended.
func (d *Dialer) dialNext(ctx context.Context, b *pendingBroker) (net.Conn, *node) {
	for b.tried < len(b.route) {
		n := b.route[b.tried]
		b.tried++
		c, err := d.dialOne(ctx, n.address)
		if err == nil {
			return c, n
		}
		b.failed.nodes = append(b.failed.nodes, err)
		if ctx.Err() != nil {
			return nil, nil
		}
		d.markDown(n, err)
	}
	return nil, nil
}

func (d *Dialer) dialOne(ctx context.Context, address string) (net.Conn, *nodeError) {
	network := d.network()
	timeout := d.dialTimeout()
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	failed := func(err error) *nodeError {
		e := &nodeError{network: network, address: address, tls: d.TLSConfig != nil, err: err}
		if parent.Err() == nil && (isTimeout(err) || errors.Is(err, context.DeadlineExceeded)) {
			e.timeout = timeout
		}
		return e
	}
	var nd net.Dialer
	if d.TLSConfig != nil {
		td := tls.Dialer{NetDialer: &nd, Config: d.TLSConfig}
		c, err := td.DialContext(ctx, network, address)
		if err != nil {
			return nil, failed(err)
		}
		return c, nil
	}
	c, err := nd.DialContext(ctx, network, address)
	if err != nil {
		return nil, failed(err)
	}
	return c, nil
}

func (d *Dialer) network() string {
	if d.Network == "" {
		return "tcp"
	}
	return d.Network
}

func (d *Dialer) dialTimeout() time.Duration {
	if d.Timeout <= 0 {
		return DefaultDialTimeout
	}
	return d.Timeout
}

// connackTimeout is ConnackTimeout with its default; 0 means none.
func (d *Dialer) connackTimeout() time.Duration {
	return max(orDefault(d.ConnackTimeout, DefaultConnackTimeout), 0)
}

// orDefault returns v, or def when v is zero.
func orDefault(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

// dialError reports that no node of the broker answered, saying for each
// node tried what failed, once: "backend: dial tcp 127.0.0.1:1883: connect:
// connection refused".
type dialError struct {
	nodes []*nodeError
}

func (e *dialError) Error() string {
	var b strings.Builder
	b.WriteString("backend: ")
	if len(e.nodes) > 1 {
		fmt.Fprintf(&b, "none of %d broker nodes answered: ", len(e.nodes))
	}
	for i, n := range e.nodes {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(n.Error())
	}
	return b.String()
}

// Unwrap returns each node's error.
func (e *dialError) Unwrap() []error {
	errs := make([]error, len(e.nodes))
	for i, n := range e.nodes {
		errs[i] = n
	}
	return errs
}

// nodeError is the failure to reach one node.
type nodeError struct {
	network, address string
	tls              bool          // TLS was asked for
	timeout          time.Duration // the dial timeout, when that is what ended it
	step             string        // what failed, when not the dial or the TLS handshake
	err              error
}

// Error names the node and the step that failed, then the cause, without
// the operation and address the net package repeats in its own errors.
func (e *nodeError) Error() string {
	step, cause := "dial", e.err
	var op *net.OpError
	switch {
	case errors.As(e.err, &op) && op.Op == "dial":
		cause = op.Err // "connect: connection refused", without "dial tcp address: " again
	case e.tls:
		step = "TLS handshake with"
	}
	if e.step != "" {
		step = e.step
	}
	if e.timeout > 0 {
		return fmt.Sprintf("%s %s %s: no answer within %v", step, e.network, e.address, e.timeout)
	}
	return fmt.Sprintf("%s %s %s: %v", step, e.network, e.address, cause)
}

// Unwrap returns the dial's error.
func (e *nodeError) Unwrap() error { return e.err }
