// Package park lets the relay of package backend give back the goroutines
// of an idle connection: instead of a goroutine blocked in Read for each
// direction, the connection's descriptors wait in an epoll set of the
// package's own, and a goroutine starts only once bytes arrive. Go's own
// netpoller cannot do that: a read waits in a goroutine, which holds its
// stack (4 KiB or more once it has read through a few layers) while the
// peer says nothing, for hours on an idle MQTT connection.
//
// It is linux-only; elsewhere Supported is false and callers keep their
// goroutines. It uses package syscall only.
package park

import (
	"errors"
	"net"
	"syscall"
)

// ErrDetached, returned by a Backend's ServeStream, says that the backend
// goes on serving the stream after ServeStream returns, and reports its end
// through the function Stream.Detach returned.
var ErrDetached = errors.New("park: the backend serves the stream detached")

// Stream is what a parked relay needs of an mqttws stream.
type Stream interface {
	// RawConn returns the hijacked connection the stream reads from.
	RawConn() (syscall.RawConn, error)
	// Detach lets backend's ServeStream return ErrDetached: the handler
	// then serves the stream until finish is called with the backend's
	// result. It reports false unless backend is the handler's Backend
	// itself (a Backend that wraps it would take ErrDetached for the
	// stream's end), or when the handler cannot let go of the stream (an
	// HTTP/2 stream lives as long as its ServeHTTP).
	Detach(backend any) (finish func(error), ok bool)
	// Serves reports whether backend is the handler's Backend itself, so
	// that the context it was handed is the stream's own, canceled
	// whenever the stream closes: what wakes a parked client side then.
	// A Backend that wraps it may hand on another context.
	Serves(backend any) bool
}

// Readier is told that a Waiter's descriptor is readable.
type Readier interface{ Ready() }

// Lookup returns c as a Stream, when it is a stream of package mqttws that
// can be parked: set by package mqttws.
var Lookup = func(c net.Conn) (Stream, bool) { return nil, false }

// RawConn returns c's raw connection when c is exactly a *net.TCPConn or a
// *net.UnixConn: not TLS, nor any wrapper, which may buffer bytes the
// descriptor no longer shows.
func RawConn(c net.Conn) (syscall.RawConn, bool) {
	switch c := c.(type) {
	case *net.TCPConn:
		rc, err := c.SyscallConn()
		return rc, err == nil
	case *net.UnixConn:
		rc, err := c.SyscallConn()
		return rc, err == nil
	}
	return nil, false
}
