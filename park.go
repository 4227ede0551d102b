package mqttws

import (
	"errors"
	"net"
	"sync/atomic"
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

// SetNonblocking switches the stream's source between the connection and
// nonblocking reads of its descriptor.
func (p parkable) SetNonblocking(on bool) {
	s := p.s
	s.readMu.Lock()
	defer s.readMu.Unlock()
	nb := &s.nonblocking
	if nb.conn == nil {
		if !on {
			return
		}
		rc, ok := park.RawConn(s.conn)
		if !ok {
			return // closed: reads meet that
		}
		nb.conn, nb.rc = s.conn, rc
		if pr, isPrefixed := s.fr.buf.src.(*prefixedReader); isPrefixed {
			pr.src = nb
		} else {
			s.fr.buf.src = nb
		}
	}
	nb.on.Store(on)
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

// nonblockingReader reads conn, or while on is set, reads its descriptor
// without waiting (park.ReadNow).
type nonblockingReader struct {
	conn net.Conn
	rc   syscall.RawConn
	on   atomic.Bool
}

func (r *nonblockingReader) Read(p []byte) (int, error) {
	if !r.on.Load() {
		return r.conn.Read(p)
	}
	return park.ReadNow(r.rc, p)
}
