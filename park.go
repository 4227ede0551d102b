package mqttws

import (
	"errors"
	"net"
	"syscall"

	"github.com/mqttws/mqttws/internal/park"
)

// package backend's relay parks the streams of idle connections through
// package park: see there.
func init() { park.Lookup = lookupParkable }

// parkable is a Stream as package park sees it.
type parkable struct{ s *Stream }

// lookupParkable returns c as a park.Stream when it is a Stream over a
// hijacked *net.TCPConn or *net.UnixConn (not TLS, nor a listener's wrapper:
// they may hold bytes the descriptor no longer shows), uncompressed (an inflater cannot resume a
// read cut short), served by a Handler that may let go of it.
func lookupParkable(c net.Conn) (park.Stream, bool) {
	s, ok := c.(*Stream)
	if !ok || s.handler == nil || s.deflate != nil {
		return nil, false
	}
	if _, ok := park.RawConn(s.conn); !ok {
		return nil, false
	}
	return parkable{s}, true
}

// RawConn returns the hijacked connection's.
func (p parkable) RawConn() (syscall.RawConn, error) {
	rc, ok := park.RawConn(p.s.conn)
	if !ok {
		return nil, errors.New("mqttws: the stream's connection is not a plain socket")
	}
	return rc, nil
}

// Serves reports whether backend is the handler's Backend itself.
func (p parkable) Serves(backend any) bool {
	return p.s.handler != nil && any(p.s.handler.Backend) == backend
}

// Detach lets backend return park.ErrDetached from ServeStream, when it is
// the handler's Backend itself; the stream is then closed and logged when
// finish is called.
func (p parkable) Detach(backend any) (finish func(error), ok bool) {
	s := p.s
	if s.handler == nil || any(s.handler.Backend) != backend || !s.detached.CompareAndSwap(false, true) {
		return nil, false
	}
	return func(err error) { s.handler.finish(s, err) }, true
}
