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
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttws/mqttws"
)

// DefaultDialTimeout bounds a dial to one broker node when Dialer.Timeout is
// zero.
const DefaultDialTimeout = 10 * time.Second

// Dialer is a Backend that dials a broker for every stream and copies bytes
// both ways, like a TCP proxy: each WebSocket connection becomes one
// connection to the broker.
//
// When the broker closes the connection, the client's WebSocket closes with
// 1000; when it breaks, with 1011; when no node can be reached, with 1013
// (Try Again Later). A client's close half-closes the broker's connection.
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
// end.
func (d *Dialer) ServeStream(ctx context.Context, conn net.Conn) error {
	if d.ProxyProtocol < 0 || d.ProxyProtocol > 2 {
		return fmt.Errorf("backend: ProxyProtocol %d: want 0, 1 or 2", d.ProxyProtocol)
	}
	broker, err := d.dial(ctx)
	if err != nil {
		return &mqttws.CloseError{Code: mqttws.CloseTryAgainLater, Reason: "broker unreachable", Err: err}
	}
	if d.ProxyProtocol > 0 {
		if err := writeProxyHeader(broker, d.ProxyProtocol, conn); err != nil {
			_ = broker.Close()
			return &mqttws.CloseError{Code: mqttws.CloseInternalError, Reason: "broker connection failed", Err: err}
		}
	}
	return d.relay(conn, broker)
}

// dial connects to the first node that answers, starting at the next one in
// turn.
func (d *Dialer) dial(ctx context.Context) (net.Conn, error) {
	if len(d.Addresses) == 0 {
		return nil, errors.New("backend: Dialer has no Addresses")
	}
	start := int(d.next.Add(1)-1) % len(d.Addresses)
	var errs []error
	for i := range d.Addresses {
		c, err := d.dialOne(ctx, d.Addresses[(start+i)%len(d.Addresses)])
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func (d *Dialer) dialOne(ctx context.Context, address string) (net.Conn, error) {
	network := d.Network
	if network == "" {
		network = "tcp"
	}
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var nd net.Dialer
	if d.TLSConfig != nil {
		td := tls.Dialer{NetDialer: &nd, Config: d.TLSConfig}
		c, err := td.DialContext(ctx, network, address)
		if err != nil {
			return nil, fmt.Errorf("backend: dial %s %s (TLS): %w", network, address, err)
		}
		return c, nil
	}
	c, err := nd.DialContext(ctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("backend: dial %s %s: %w", network, address, err)
	}
	return c, nil
}
