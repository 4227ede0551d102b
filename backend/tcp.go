// Package backend holds mqttws backends that need nothing beyond the
// standard library: Dial relays each stream to a broker over TCP, TLS or a
// unix socket.
package backend

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/mqttws/mqttws"
)

// DefaultDialTimeout bounds a dial to the broker when Dialer.Timeout is zero.
const DefaultDialTimeout = 10 * time.Second

// Dialer is a Backend that dials a broker for every stream and copies bytes
// both ways, like a TCP proxy: the WebSocket side becomes one TCP connection
// to the broker.
//
// When the broker closes the connection, the client's WebSocket closes with
// 1000; when the broker cannot be reached within Timeout, with 1013 (Try
// Again Later). A half-close from either side is passed on to the other.
type Dialer struct {
	// Network is "tcp" (the default), "tcp4", "tcp6" or "unix".
	Network string
	// Address is the broker's "host:port", or a socket path for "unix".
	Address string
	// TLSConfig, when not nil, makes the connection to the broker TLS.
	TLSConfig *tls.Config
	// Timeout bounds the dial (and the TLS handshake). Zero means
	// DefaultDialTimeout.
	Timeout time.Duration
}

// Dial returns a Dialer for the broker at a TCP address ("host:port").
func Dial(address string) *Dialer { return &Dialer{Address: address} }

// ServeStream dials the broker and relays conn to it until both directions
// end.
func (d *Dialer) ServeStream(ctx context.Context, conn net.Conn) error {
	upstream, err := d.dial(ctx)
	if err != nil {
		return &mqttws.CloseError{Code: mqttws.CloseTryAgainLater, Reason: "broker unreachable"}
	}
	return relay(conn, upstream)
}

func (d *Dialer) dial(ctx context.Context) (net.Conn, error) {
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
		c, err := td.DialContext(ctx, network, d.Address)
		if err != nil {
			return nil, fmt.Errorf("backend: dial %s %s (TLS): %w", network, d.Address, err)
		}
		return c, nil
	}
	c, err := nd.DialContext(ctx, network, d.Address)
	if err != nil {
		return nil, fmt.Errorf("backend: dial %s %s: %w", network, d.Address, err)
	}
	return c, nil
}

// relayBufferSize is the size of each direction's copy buffer.
const relayBufferSize = 16 << 10

// brokerLinger bounds the wait for the broker to close its side once the
// client has gone and the broker's connection was half-closed.
const brokerLinger = 5 * time.Second

// relay copies both ways between the client's stream and the broker. The
// broker closing its side ends the relay, and the client is then closed
// with 1000. The client closing its side half-closes the broker's
// connection, so that the broker sees a clean end of stream, and the relay
// waits a little for the broker to close in turn.
func relay(client, broker net.Conn) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, relayBufferSize)
		// The wrappers keep io.CopyBuffer from using ReadFrom/WriteTo,
		// which would allocate buffers of their own.
		_, _ = io.CopyBuffer(writerOnly{broker}, readerOnly{client}, buf)
		if !closeWrite(broker) {
			_ = broker.Close()
			return
		}
		_ = broker.SetReadDeadline(time.Now().Add(brokerLinger))
	}()
	buf := make([]byte, relayBufferSize)
	_, brokerErr := io.CopyBuffer(writerOnly{client}, readerOnly{broker}, buf)
	_ = broker.Close()
	_ = client.Close()
	wg.Wait()
	if brokerErr != nil && !errors.Is(brokerErr, net.ErrClosed) && !errors.Is(brokerErr, mqttws.ErrStreamClosed) && !isTimeout(brokerErr) {
		return &mqttws.CloseError{Code: mqttws.CloseInternalError, Reason: "broker connection failed"}
	}
	return nil
}

type readerOnly struct{ io.Reader }

type writerOnly struct{ io.Writer }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// closeWrite half-closes c when it can.
func closeWrite(c net.Conn) bool {
	cw, ok := c.(interface{ CloseWrite() error })
	return ok && cw.CloseWrite() == nil
}
