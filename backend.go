package mqttws

import (
	"context"
	"net"
)

// Backend serves the MQTT byte stream of one WebSocket connection: it relays
// it to a broker or runs a broker on it.
//
// ServeStream runs for the connection's whole life, in its own goroutine.
// ctx lives as long as the connection (it is not the request's context,
// which net/http cancels once the handler returns): it is canceled when the
// stream starts closing or the connection is gone. It carries the request
// context's values (and those of Handler.Authorize's context), except after
// backend.Dialer parked an idle relay and returned early: then it no longer
// reads them, and the handler lets them go. conn is a *Stream.
//
// When ServeStream returns, the handler closes the stream: with CloseNormal
// (1000) for a nil error, with the code of a *CloseError found in the error
// chain, and with CloseInternalError (1011) otherwise. A stream the backend
// closed itself stays as it was.
type Backend interface {
	ServeStream(ctx context.Context, conn net.Conn) error
}

// BackendFunc adapts a function to the Backend interface.
type BackendFunc func(ctx context.Context, conn net.Conn) error

// ServeStream calls f(ctx, conn).
func (f BackendFunc) ServeStream(ctx context.Context, conn net.Conn) error { return f(ctx, conn) }
