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
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttws/mqttws"
)

// DefaultDialTimeout bounds a dial to one broker node when Dialer.Timeout is
// zero.
const DefaultDialTimeout = 10 * time.Second

// DefaultConnectTimeout bounds the wait for a client's whole CONNECT packet
// when Dialer.ConnectTimeout is zero. It is the same as mochi's.
const DefaultConnectTimeout = 10 * time.Second

// Dialer is a Backend that dials a broker for every stream and copies bytes
// both ways, like a TCP proxy: each WebSocket connection becomes one
// connection to the broker.
//
// When the broker closes the connection, the client's WebSocket closes with
// 1000; when it breaks, with 1011; when no node can be reached, with 1013
// (Try Again Later). A client's close half-closes the broker's connection.
// A client whose first MQTT packet is not a CONNECT gets 1002, and one whose
// CONNECT is not whole within ConnectTimeout gets 1008.
type Dialer struct {
	// Network is "tcp" (the default), "tcp4", "tcp6" or "unix".
	Network string
	// Addresses are the broker's "host:port" (a socket path for "unix"), or
	// those of the nodes of a broker cluster (EMQX, VerneMQ, HiveMQ…). Each
	// stream starts at the next node in turn, spreading clients over the
	// nodes, and goes on to the following ones when a node refuses or times
	// out, so a node's restart costs its clients one reconnect.
	Addresses []string
	// TLSConfig, when not nil, makes the connections to the broker TLS.
	TLSConfig *tls.Config
	// Timeout bounds the dial (and TLS handshake) to each node. Zero means
	// DefaultDialTimeout.
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
	// client. Once the CONNECT has gone by, the relay no longer looks at the
	// bytes. Zero means DefaultConnectTimeout; negative means none, and no
	// byte is looked at.
	ConnectTimeout time.Duration
	// ProxyProtocol, when 1 or 2, starts each broker connection with a PROXY
	// protocol header of that version (HAProxy's PROXY protocol), giving the
	// client's address (Stream.RemoteAddr, which honors the handler's
	// TrustedProxies) so that the broker logs and authorizes the real
	// client. The broker must expect it. Zero sends none.
	ProxyProtocol int

	next         atomic.Uint32 // the node the next stream starts at
	largeBuffers sync.Pool     // of *[]byte of largeCopySize
}

// Dial returns a Dialer for a broker at a TCP address ("host:port"), or for
// the nodes of a cluster.
func Dial(addresses ...string) *Dialer { return &Dialer{Addresses: addresses} }

// ServeStream dials the broker and relays conn to it until both directions
// end. The dial runs while the client's CONNECT is read and checked (see
// ConnectTimeout).
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
	dialCtx, cancelDial := context.WithCancel(ctx)
	defer cancelDial()
	b := &pendingBroker{done: make(chan struct{})}
	go func() {
		defer close(b.done)
		b.conn, b.err = d.connect(dialCtx, conn)
		if b.err != nil && watch != nil {
			// The CONNECT watch may be blocked reading the client: the
			// broker's failure decides now, not the client's next byte.
			_ = conn.SetReadDeadline(aLongTimeAgo)
		}
	}()
	return d.relay(ctx, conn, b, watch, cancelDial)
}

// aLongTimeAgo is a read deadline that ends a blocked read at once.
var aLongTimeAgo = time.Unix(1, 0)

// pendingBroker is the broker connection being dialed: conn and err are set
// once done is closed.
type pendingBroker struct {
	done chan struct{}
	conn net.Conn
	err  error
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

// connect dials the broker and sends the PROXY protocol header, if any. Its
// errors are *mqttws.CloseError: 1013 when no node answered, 1011 when the
// header could not be sent.
func (d *Dialer) connect(ctx context.Context, client net.Conn) (net.Conn, error) {
	broker, err := d.dial(ctx)
	if err != nil {
		return nil, &mqttws.CloseError{Code: mqttws.CloseTryAgainLater, Reason: "broker unreachable", Err: err}
	}
	if d.ProxyProtocol > 0 {
		if err := writeProxyHeader(broker, d.ProxyProtocol, client); err != nil {
			_ = broker.Close()
			return nil, &mqttws.CloseError{Code: mqttws.CloseInternalError, Reason: "broker connection failed", Err: err}
		}
	}
	return broker, nil
}

// dial connects to the first node that answers, starting at the next one in
// turn.
func (d *Dialer) dial(ctx context.Context) (net.Conn, error) {
	if len(d.Addresses) == 0 {
		return nil, errors.New("backend: Dialer has no Addresses")
	}
	start := int(d.next.Add(1)-1) % len(d.Addresses)
	failed := &dialError{}
	for i := range d.Addresses {
		c, err := d.dialOne(ctx, d.Addresses[(start+i)%len(d.Addresses)])
		if err == nil {
			return c, nil
		}
		failed.nodes = append(failed.nodes, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, failed
}

func (d *Dialer) dialOne(ctx context.Context, address string) (net.Conn, *nodeError) {
	network := d.Network
	if network == "" {
		network = "tcp"
	}
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
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
	if e.timeout > 0 {
		return fmt.Sprintf("%s %s %s: no answer within %v", step, e.network, e.address, e.timeout)
	}
	return fmt.Sprintf("%s %s %s: %v", step, e.network, e.address, cause)
}

// Unwrap returns the dial's error.
func (e *nodeError) Unwrap() error { return e.err }
