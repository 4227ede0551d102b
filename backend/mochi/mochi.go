// Package mochi runs the streams of an mqttws.Handler on an in-process
// mochi-mqtt broker (github.com/mochi-mqtt/server/v2).
//
// It lives apart from package mqttws and package backend so that only
// programs that use it build mochi-mqtt.
package mochi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/mqttws/mqttws"
)

// DefaultConnectTimeout bounds the wait for a client's CONNECT packet when
// Options.ConnectTimeout is zero.
const DefaultConnectTimeout = 10 * time.Second

// DefaultListenerID is the mochi listener id used when Options.ListenerID is
// empty.
const DefaultListenerID = "mqttws"

// ErrClosed is matched (errors.Is) by the error ServeStream returns for
// streams that arrive after the mochi server (or the listener) was closed.
// Their clients get CloseGoingAway (1001).
var ErrClosed = errors.New("mochi: broker closed")

// errClosed is ErrClosed, asking the handler for CloseGoingAway rather than
// the 1011 of an unknown error: the broker is not failing, it is gone.
var errClosed error = &closedError{CloseError: mqttws.CloseError{Code: mqttws.CloseGoingAway, Reason: "broker closed"}}

type closedError struct{ mqttws.CloseError }

func (e *closedError) Error() string   { return ErrClosed.Error() }
func (e *closedError) Unwrap() []error { return []error{ErrClosed, &e.CloseError} }

// Options configures Attach. The zero value works.
type Options struct {
	// ListenerID names the listener in mochi (it shows in mochi's logs and
	// in each client's Net.Listener). Empty means DefaultListenerID.
	ListenerID string
	// ConnectTimeout bounds the wait for the CONNECT packet: mochi reads it
	// with no deadline, and a client that never sends it would hold its
	// connection forever. A client too slow is closed with
	// ClosePolicyViolation (1008). Once connected, mochi sets deadlines from
	// the MQTT keepalive. Zero means DefaultConnectTimeout; negative means
	// none.
	ConnectTimeout time.Duration
}

// Backend is an mqttws.Backend that hands each stream to a mochi server, as
// a client of a mochi listener registered with the server: mochi's
// Server.Close then disconnects WebSocket clients too.
//
// A client's Net.Conn in mochi wraps its *mqttws.Stream; the stream's
// methods, such as Subprotocol, are there through an interface assertion.
// When mochi ends a connection, the client gets CloseNormal (1000) whatever
// the reason (an MQTT client learns it from the CONNACK or DISCONNECT packet
// mochi sent first), except a missing CONNECT (see Options.ConnectTimeout).
type Backend struct {
	server         *mqtt.Server
	id             string
	connectTimeout time.Duration

	mu     sync.Mutex
	closed bool
}

// Attach registers a listener for mqttws streams with server and returns the
// Backend that serves them. Call it before server.Serve, like AddListener.
func Attach(server *mqtt.Server, opts Options) (*Backend, error) {
	b := &Backend{
		server:         server,
		id:             opts.ListenerID,
		connectTimeout: opts.ConnectTimeout,
	}
	if b.id == "" {
		b.id = DefaultListenerID
	}
	if b.connectTimeout == 0 {
		b.connectTimeout = DefaultConnectTimeout
	}
	if err := server.AddListener(&listener{backend: b}); err != nil {
		return nil, fmt.Errorf("mochi: add listener %q: %w", b.id, err)
	}
	return b, nil
}

// ServeStream runs the mochi client for conn until it disconnects.
func (b *Backend) ServeStream(ctx context.Context, conn net.Conn) error {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return errClosed
	}
	if b.connectTimeout > 0 {
		// mochi replaces this deadline once CONNECT is read.
		if err := conn.SetReadDeadline(time.Now().Add(b.connectTimeout)); err != nil {
			return fmt.Errorf("mochi: set CONNECT deadline: %w", err)
		}
	}
	if s, ok := conn.(*mqttws.Stream); ok {
		conn = newStream(s, b.connectTimeout)
	}
	// EstablishConnection closes conn when the client is done.
	err := b.server.EstablishConnection(b.id, conn)
	if err != nil {
		return fmt.Errorf("mochi: client from %s: %w", conn.RemoteAddr(), err)
	}
	return nil
}

// listener is the mochi side of a Backend: it accepts nothing itself, and
// exists so that mochi knows the clients and closes them on Server.Close.
type listener struct {
	backend *Backend
}

func (l *listener) Init(*slog.Logger) error     { return nil }
func (l *listener) Serve(listeners.EstablishFn) {}
func (l *listener) ID() string                  { return l.backend.id }
func (l *listener) Address() string             { return "mqttws" }
func (l *listener) Protocol() string            { return "ws" }

func (l *listener) Close(closeClients listeners.CloseFn) {
	l.backend.mu.Lock()
	l.backend.closed = true
	l.backend.mu.Unlock()
	closeClients(l.backend.id)
}
