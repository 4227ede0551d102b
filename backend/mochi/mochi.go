// Package mochi runs the streams of an mqttws.Handler on an in-process
// mochi-mqtt broker (github.com/mochi-mqtt/server/v2).
//
// It lives apart from package mqttws and package backend so that only
// programs that use it build mochi-mqtt.
//
// # Memory
//
// The adapter holds no buffer of its own: mochi reads and writes the
// handler's *mqttws.Stream through a wrapper of a few words (no bytes are
// kept there). What a client can pin is mochi's, and the adapter cannot
// bound it: mochi copies each PUBLISH for each subscriber into that
// subscriber's outbound queue, which takes up to
// Capabilities.MaximumClientWritesPending packets (8,192 by default, past
// which mochi drops them): a count, not bytes. Only with
// Capabilities.MaximumPacketSize set (0, the default, is no limit) does
// their product bound the bytes queued for one subscriber that does not
// read, for example 64 × 64 KiB = 4 MiB; QoS 1 and 2 messages awaiting an
// acknowledgment add up to Capabilities.MaximumInflight more. A subscriber
// that stops reading altogether is closed when a write to it times out
// (the handler's WriteTimeout), which frees its queue; one that reads
// slowly keeps it, within those bounds. mochi's per-client read buffer and write
// buffer (ClientNetReadBufferSize and ClientNetWriteBufferSize, 2 KiB each
// by default) come on top.
package mochi

import (
	"context"
	"errors"
	"fmt"
	"io"
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

// ServeStream runs the mochi client for conn until it disconnects. It
// returns nil when the client went away (a close frame, a dropped
// connection, a stream the handler closed), a *mqttws.CloseError with
// ClosePolicyViolation when the CONNECT did not come in time, and mochi's
// error otherwise (a refused CONNECT, a protocol error, an expired MQTT
// keepalive, a hook's error).
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
	var st *stream
	if s, ok := conn.(*mqttws.Stream); ok {
		st = newStream(ctx, s, b.connectTimeout)
		conn = st
	}
	// EstablishConnection closes conn when the client is done.
	err := b.server.EstablishConnection(b.id, conn)
	switch {
	case err == nil:
		return nil
	case st != nil && st.connectExpired.Load():
		return &mqttws.CloseError{
			Code:   mqttws.ClosePolicyViolation,
			Reason: st.connectTimeoutReason(),
			Err:    fmt.Errorf("mochi: client from %s: %w", conn.RemoteAddr(), err),
		}
	case clientGone(err) || (st != nil && st.endedFirst.Load()):
		return nil
	}
	return fmt.Errorf("mochi: client from %s: %w", conn.RemoteAddr(), err)
}

// clientGone reports whether err, which ended a mochi client, only says that
// the client went away: it closed its WebSocket (io.EOF), its connection
// ended (io.EOF, io.ErrUnexpectedEOF inside a frame), the stream was closed,
// or the stream closed itself because the client broke RFC 6455 (a
// *mqttws.CloseError, already in the stream's close record). None of these
// is the backend failing.
func clientGone(err error) bool {
	var ce *mqttws.CloseError
	return errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, mqttws.ErrStreamClosed) ||
		errors.Is(err, net.ErrClosed) ||
		errors.As(err, &ce)
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
