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
)

// DefaultConnectTimeout bounds the wait for a client's CONNECT packet when
// Options.ConnectTimeout is zero.
const DefaultConnectTimeout = 10 * time.Second

// DefaultListenerID is the mochi listener id used when Options.ListenerID is
// empty.
const DefaultListenerID = "mqttws"

// ErrClosed is returned for streams that arrive after the mochi server (or
// the listener) was closed.
var ErrClosed = errors.New("mochi: broker closed")

// Options configures Attach. The zero value works.
type Options struct {
	// ListenerID names the listener in mochi (it shows in mochi's logs and
	// in each client's Net.Listener). Empty means DefaultListenerID.
	ListenerID string
	// ConnectTimeout bounds the wait for the CONNECT packet: mochi reads it
	// with no deadline, and a client that never sends it would hold its
	// connection forever. Once connected, mochi sets deadlines from the MQTT
	// keepalive. Zero means DefaultConnectTimeout; negative means none.
	ConnectTimeout time.Duration
}

// Backend is an mqttws.Backend that hands each stream to a mochi server, as
// a client of a mochi listener registered with the server: mochi's
// Server.Close then disconnects WebSocket clients too.
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
		return ErrClosed
	}
	if b.connectTimeout > 0 {
		// mochi replaces this deadline once CONNECT is read.
		if err := conn.SetReadDeadline(time.Now().Add(b.connectTimeout)); err != nil {
			return fmt.Errorf("mochi: set CONNECT deadline: %w", err)
		}
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
