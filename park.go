package mqttws

import (
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
// hijacked plain TCP connection (not TLS: its records hold bytes the
// descriptor no longer shows), uncompressed, served by a Handler that may
// let go of it.
func lookupParkable(c net.Conn) (park.Stream, bool) {
	s, ok := c.(*Stream)
	if !ok || s.handler == nil || s.deflate != nil {
		return nil, false
	}
	if _, ok := s.conn.(syscall.Conn); !ok {
		return nil, false
	}
	return parkable{s}, true
}

// RawConn returns the hijacked connection's.
func (p parkable) RawConn() (syscall.RawConn, error) {
	return p.s.conn.(syscall.Conn).SyscallConn()
}

// Buffered reports whether a Read would return bytes, or an error, without
// reading the connection.
func (p parkable) Buffered() bool {
	s := p.s
	s.readMu.Lock()
	defer s.readMu.Unlock()
	if s.readErr != nil || s.fr.buf.buffered() > 0 {
		return true
	}
	pr, ok := s.fr.buf.src.(*prefixedReader)
	return ok && len(pr.prefix) > 0
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
