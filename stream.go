package mqttws

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// ErrStreamClosed is returned by Stream.Write once the stream is closed or a
// close frame has been sent.
var ErrStreamClosed = errors.New("mqttws: stream closed")

// Stream is the MQTT byte stream of one WebSocket connection, as a net.Conn.
//
// Read returns the payload of the client's binary frames as one stream of
// bytes, whatever their boundaries; it answers pings and close frames by
// itself. Write sends binary frames. One goroutine may Read while others
// Write; control frames the reader sends never interleave with data frames.
type Stream struct {
	conn        net.Conn
	remoteAddr  net.Addr
	subprotocol string
	set         *streamSettings    // the handler's settings
	cancel      context.CancelFunc // ends the backend's context
	handler     *Handler           // serves the stream in a goroutine it may let go of; nil over HTTP/2
	detached    atomic.Bool        // the backend serves on after ServeStream returned
	closing     atomic.Bool        // Close has begun
	httpVersion uint8              // the HTTP version that carried the upgrade, major<<4 | minor, for logs
	closeSent   bool               // no data may follow a close frame; under writeMu
	connGone    bool               // the TCP connection is closed; under closeMu

	readMu  sync.Mutex
	fr      frameReader
	readErr error // set once reading is over for good

	deflate *streamDeflate // nil unless permessage-deflate was negotiated

	writeMu  sync.Mutex
	fw       frameWriter
	writeErr error // set once a write failed

	writeDeadline atomic.Int64 // the deadline set through the stream, Unix ns; 0: none
	armedUntil    atomic.Int64 // the write deadline armed for WriteTimeout, Unix ns; 0: none
	closeDeadline atomic.Int64 // the write deadline of the close frame, Unix ns; 0: none

	keepalive keepalive

	closeOnce sync.Once

	bytesIn, bytesOut   atomic.Int64
	framesIn, framesOut atomic.Int64

	closeMu sync.Mutex    // guards what follows, and connGone
	done    chan struct{} // made by the first to wait for the connection's end
	ending  *closeLog     // made with the first close frame or drop
}

// closeLog is how a stream ended: what is known of it once a close frame
// went either way or the connection was dropped. It is kept apart from the
// Stream, which an idle connection holds, and made only when the end begins.
type closeLog struct {
	closeTimer *time.Timer // closes the connection CloseTimeout after Close began
	sent, rcvd closeRecord
	dropReason string // why the connection was dropped without a close handshake
}

// closeRecord is a close frame sent or received.
type closeRecord struct {
	ok     bool
	code   CloseCode // 0 for a close frame without a body
	reason string
}

// streamConfig holds what a Stream takes from its Handler.
type streamConfig struct {
	pool             *bufferPool
	subprotocol      string
	httpVersion      uint8    // major<<4 | minor
	remoteAddr       net.Addr // nil: the connection's
	maxFrameSize     int64
	deflate          *deflateConfig // nil: permessage-deflate not negotiated
	firstDataTimeout time.Duration
	cancel           context.CancelFunc
	settings         *streamSettings // kept by the stream, shared with its Handler's other streams
}

// streamSettings are the settings a Stream keeps from its Handler: one copy
// per Handler, shared by its streams, so that each holds a pointer rather
// than the values (see TestStreamFitsItsSizeClass).
type streamSettings struct {
	writeFrameSize int
	writeTimeout   time.Duration
	closeTimeout   time.Duration
	pingInterval   time.Duration
	pongTimeout    time.Duration
	clock          *tickClock // runs the keepalive's ticks; nil: a clock of the stream's own (tests)
}

// newStream serves conn, reading the client's bytes from src (conn itself, or
// a reader that first returns bytes buffered before the hijack).
func newStream(conn net.Conn, src io.Reader, cfg streamConfig) *Stream {
	s := &Stream{
		conn:        conn,
		remoteAddr:  conn.RemoteAddr(),
		subprotocol: cfg.subprotocol,
		httpVersion: cfg.httpVersion,
		cancel:      cfg.cancel,
	}
	if cfg.remoteAddr != nil {
		s.remoteAddr = cfg.remoteAddr
	}
	s.fr.init(src, cfg.pool, cfg.maxFrameSize, &s.keepalive.traffic)
	s.fw.dst = conn
	if cfg.deflate != nil {
		s.deflate = newStreamDeflate(s, cfg.deflate)
		s.fr.deflate = true
	}
	s.set = cfg.settings
	if s.set.clock == nil {
		own := *s.set
		own.clock = new(tickClock)
		s.set = &own
	}
	s.keepalive.traffic.base = time.Now()
	s.keepalive.start(s, cfg.firstDataTimeout)
	return s
}

// addrKey returns the client network counted for MaxConnectionsPerAddr:
// the one the handler admitted the stream in (it is computed from the same
// address).
func (s *Stream) addrKey() netip.Prefix { return clientKey(s.remoteAddr) }

// httpProto returns the HTTP version that carried the upgrade, for logs.
func (s *Stream) httpProto() string {
	return fmt.Sprintf("HTTP/%d.%d", s.httpVersion>>4, s.httpVersion&0xf)
}

// Subprotocol returns the negotiated WebSocket subprotocol: "mqtt",
// "mqttv3.1", or "" when the client offered none and the handler allowed it.
func (s *Stream) Subprotocol() string { return s.subprotocol }

// Compressed reports whether the client and the handler negotiated
// permessage-deflate (Handler.Compression).
func (s *Stream) Compressed() bool { return s.deflate != nil }

// Read reads MQTT bytes from the payload of the client's binary frames,
// inflated as they are read when the message is compressed.
//
// It returns io.EOF after the client's close frame (or the end of the TCP
// connection between frames), io.ErrUnexpectedEOF when the connection ends
// inside a frame, a *CloseError when the client broke the protocol (the
// stream then closes with the matching code), and the error of an expired
// read deadline, after which Read may be called again; except inside a
// compressed message, which cannot be resumed: there an expired deadline
// ends reading for good, and later calls return an error.
func (s *Stream) Read(p []byte) (int, error) {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	return s.readLocked(p)
}

func (s *Stream) readLocked(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, s.readErr
	}
	if s.readErr == nil && !s.fr.compressed {
		if n := s.fr.readBufferedFrames(p); n > 0 {
			s.fr.bytes += int64(n)
			if !s.keepalive.gotData.Load() {
				s.keepalive.dataRead()
			}
			return n, nil
		}
	}
	for s.readErr == nil {
		if s.fr.compressed {
			s.publishCounts()
			n, err := s.deflate.in.read(p)
			if n > 0 {
				s.bytesIn.Add(int64(n))
				s.deflate.bytesIn.Add(int64(n))
				s.keepalive.dataRead()
				return n, nil
			}
			if err != nil {
				return 0, s.inflateFailed(err)
			}
			continue // the message is over
		}
		if s.fr.remaining > 0 {
			if s.fr.buf.buffered() == 0 {
				s.publishCounts() // the read may wait for the network
			}
			n, err := s.fr.readPayload(p)
			if n > 0 {
				n += s.readBuffered(p[n:])
				s.fr.bytes += int64(n)
				s.keepalive.dataRead()
				return n, nil
			}
			return 0, s.readFailed(err)
		}
		if s.fr.nextBuffered() {
			continue
		}
		s.publishCounts() // next may wait for the network
		h, payload, err := s.nextFrame()
		if err != nil {
			return 0, s.readFailed(err)
		}
		switch h.OpCode {
		case ws.OpPing:
			s.writeControl(ws.OpPong, payload)
		case ws.OpClose:
			return 0, s.closeReceived(payload)
		}
		// Pongs are ignored; data frames, empty ones included, loop to
		// their payload.
	}
	return 0, s.readErr
}

// publishCounts adds the frames and bytes read since the last call to the
// stream's counters. Read calls it before anything that may wait for the
// network, and reading calls it when it ends, rather than at every Read: an
// atomic add costs about as much here as taking a small frame from the
// buffer, and frames taken from the buffer need no other. So the counters
// are exact whenever the reader waits for the client or is done, and
// otherwise trail what Read returned by at most the frames of one read
// buffer, until the next Read that needs the network.
func (s *Stream) publishCounts() {
	if s.fr.frames != 0 {
		s.framesIn.Add(s.fr.frames)
		s.fr.frames = 0
	}
	if s.fr.bytes != 0 {
		s.bytesIn.Add(s.fr.bytes)
		s.fr.bytes = 0
	}
}

// nextFrame reads the next frame header (and a control frame's payload, see
// frameReader.next) and counts the frame.
func (s *Stream) nextFrame() (ws.Header, []byte, error) {
	h, payload, err := s.fr.next()
	if err == nil {
		s.framesIn.Add(1)
	}
	return h, payload, err
}

// readBuffered copies into p the payload of the data frames already
// buffered, without reading from the connection, so that a reader with room
// gets every packet waiting in one call. It stops at a control frame and at
// anything that fails, which the next Read meets.
func (s *Stream) readBuffered(p []byte) int {
	total := 0
	for len(p) > 0 {
		if s.fr.remaining == 0 {
			if s.fr.nextBuffered() {
				continue
			}
			if !s.fr.dataHeaderBuffered() {
				break
			}
			if _, _, err := s.nextFrame(); err != nil {
				break
			}
			continue
		}
		avail := s.fr.buf.buffered()
		if avail == 0 {
			break
		}
		n, _ := s.fr.readPayload(p[:min(len(p), avail)])
		total += n
		p = p[n:]
	}
	return total
}

// readFailed decides what a read error means for the stream and returns
// the error Read reports.
func (s *Stream) readFailed(err error) error {
	var ce *CloseError
	switch {
	case isTimeout(err) && !s.closing.Load():
		return err
	case errors.Is(err, errCloseInMessage):
		return s.closeReceived(s.deflate.in.src.closeBody)
	case errors.As(err, &ce):
		s.sendClose(ce.Code, ce.Reason)
		s.readErr = ce
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		s.readErr = err
	case errors.Is(err, net.ErrClosed):
		s.readErr = ErrStreamClosed
	default:
		s.readErr = fmt.Errorf("mqttws: read: %w", err)
	}
	s.endReading()
	return s.readErr
}

// inflateFailed is readFailed for an error met inside a compressed message.
// A decompressor stopped by a read deadline cannot resume: the caller gets
// the timeout, and reading is over.
func (s *Stream) inflateFailed(err error) error {
	if isTimeout(err) && !s.closing.Load() {
		s.readErr = errInflateDeadline
		s.deflate.in.release()
		return err
	}
	return s.readFailed(err)
}

// endReading closes the connection once reading is over for good, and
// gives back a decompressor held for a message left unfinished.
func (s *Stream) endReading() {
	s.publishCounts()
	if s.deflate != nil {
		s.deflate.in.release()
	}
	s.closeConn()
}

// closeReceived handles the client's close frame: a valid one is echoed
// (unless it answers ours) and ends the stream with io.EOF.
func (s *Stream) closeReceived(body []byte) error {
	code, reason, cerr := parseCloseBody(body)
	if cerr != nil {
		return s.readFailed(cerr)
	}
	s.closeMu.Lock()
	s.endingLocked().rcvd = closeRecord{ok: true, code: code, reason: reason}
	s.closeMu.Unlock()
	s.sendClose(code, "")
	s.readErr = io.EOF
	s.endReading()
	return io.EOF
}

// Write sends p as one binary frame, or as several of at most the handler's
// WriteFrameSize. With permessage-deflate negotiated, a p of at least the
// compression threshold goes out as one compressed message, in frames of at
// most WriteFrameSize compressed bytes. An error from the connection (an
// expired write deadline included) leaves a frame half-sent, so it closes
// the stream.
func (s *Stream) Write(p []byte) (int, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.writeErr != nil {
		return 0, s.writeErr
	}
	if s.closeSent {
		return 0, ErrStreamClosed
	}
	s.armWriteDeadline()
	if s.deflate != nil && len(p) > 0 && len(p) >= s.deflate.cfg.threshold {
		sent, err := s.writeCompressedLocked(p)
		if err != nil {
			return 0, err
		}
		if sent {
			s.bytesOut.Add(int64(len(p)))
			return len(p), nil
		}
		// p did not shrink: it goes out as it is.
	}
	written := 0
	for len(p) > 0 {
		chunk := p
		if s.set.writeFrameSize > 0 && len(chunk) > s.set.writeFrameSize {
			chunk = chunk[:s.set.writeFrameSize]
		}
		if err := s.writeFrameLocked(ws.OpBinary, chunk); err != nil {
			return written, err
		}
		written += len(chunk)
		p = p[len(chunk):]
	}
	s.bytesOut.Add(int64(written))
	return written, nil
}

// writeFrameLocked writes one final frame with writeMu held.
func (s *Stream) writeFrameLocked(op ws.OpCode, payload []byte) error {
	return s.writeHeaderLocked(ws.Header{Fin: true, OpCode: op}, payload)
}

// writeHeaderLocked writes one frame with header h with writeMu held.
func (s *Stream) writeHeaderLocked(h ws.Header, payload []byte) error {
	err := s.fw.writeFrame(h, payload)
	if err != nil {
		if errors.Is(err, net.ErrClosed) {
			s.writeErr = ErrStreamClosed
		} else {
			s.writeErr = fmt.Errorf("mqttws: write: %w", err)
		}
		s.closeConn()
		return s.writeErr
	}
	s.framesOut.Add(1)
	if h.OpCode != ws.OpPing {
		s.keepalive.traffic.sent()
	}
	return nil
}

// armWriteDeadline bounds the next write by WriteTimeout, or by the deadline
// set on the stream when that comes first. The connection's deadline is
// moved only when the one in force would give the write less than half of
// WriteTimeout, which saves a runtime call on most frames.
func (s *Stream) armWriteDeadline() {
	if s.set.writeTimeout <= 0 {
		return
	}
	want := time.Now().Add(s.set.writeTimeout).UnixNano()
	if user := s.writeDeadline.Load(); user != 0 && user < want {
		want = user
	}
	if cd := s.closeDeadline.Load(); cd != 0 && cd < want {
		want = cd
	}
	if armed := s.armedUntil.Load(); armed != 0 && armed <= want && armed >= want-int64(s.set.writeTimeout/2) {
		return
	}
	s.armedUntil.Store(want)
	_ = s.conn.SetWriteDeadline(time.Unix(0, want))
}

// writeControl sends a control frame unless the stream can no longer send.
func (s *Stream) writeControl(op ws.OpCode, payload []byte) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.writeErr == nil && !s.closeSent {
		s.armWriteDeadline()
		_ = s.writeFrameLocked(op, payload)
	}
}

// sendClose sends a close frame once. It bounds the time a stuck writer may
// hold the stream with a write deadline.
func (s *Stream) sendClose(code CloseCode, reason string) {
	cd := time.Now().Add(s.set.closeTimeout)
	s.closeDeadline.CompareAndSwap(0, cd.UnixNano())
	_ = s.conn.SetWriteDeadline(time.Unix(0, s.closeDeadline.Load()))
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.writeErr != nil || s.closeSent {
		return
	}
	s.closeSent = true
	// Allocated here, once per stream, rather than held in every Stream.
	var body []byte
	if code != 0 {
		reason = truncateReason(reason)
		body = make([]byte, 2+len(reason))
		ws.PutCloseFrameBody(body, ws.StatusCode(code), reason)
	}
	s.closeMu.Lock()
	s.endingLocked().sent = closeRecord{ok: true, code: code, reason: reason}
	s.closeMu.Unlock()
	_ = s.writeFrameLocked(ws.OpClose, body)
}

// Close closes the stream with CloseNormal (1000). See CloseWith.
func (s *Stream) Close() error { return s.CloseWith(CloseNormal, "") }

// CloseWith sends a close frame with code and reason (cut to fit 123
// bytes) and returns; the TCP connection closes once the client answers with
// its own close frame, or after the handler's CloseTimeout. It does not wait
// for the client's answer; sending the frame, which may wait for a write
// under way, is bounded by CloseTimeout. Closing an already closed stream
// does nothing.
func (s *Stream) CloseWith(code CloseCode, reason string) error {
	if !s.closing.CompareAndSwap(false, true) {
		return nil
	}
	if s.connClosed() {
		return nil // the connection is gone already
	}
	if s.cancel != nil {
		s.cancel() // the backend's context: the connection is ending
	}
	s.sendClose(code, reason)
	_ = s.conn.SetReadDeadline(time.Now().Add(s.set.closeTimeout))
	timer := time.AfterFunc(s.set.closeTimeout, s.closeConn)
	s.closeMu.Lock()
	s.endingLocked().closeTimer = timer
	s.closeMu.Unlock()
	if s.connClosed() { // closed meanwhile, maybe before the timer was stored
		timer.Stop()
		return nil
	}
	// Whoever reads next (the backend, or the handler once the backend has
	// returned) meets the client's reply and closes the connection; the
	// timer closes it if nobody does in time.
	if s.readMu.TryLock() {
		over := s.readErr != nil
		s.readMu.Unlock()
		if over { // reading is over: no reply will be read
			s.closeConn()
		}
	}
	return nil
}

// drain reads and drops what the client sends until reading ends: for use
// once the stream is closing, when the read deadline bounds it.
func (s *Stream) drain() {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	var discard [512]byte
	for s.readErr == nil {
		_, _ = s.readLocked(discard[:])
	}
}

// closeConn closes the TCP connection once and ends the backend's context.
func (s *Stream) closeConn() {
	s.closeOnce.Do(func() {
		s.keepalive.stop()
		s.closeMu.Lock()
		if s.ending != nil && s.ending.closeTimer != nil {
			s.ending.closeTimer.Stop()
		}
		s.closeMu.Unlock()
		_ = s.conn.Close()
		s.closeMu.Lock()
		s.connGone = true
		if s.done != nil {
			close(s.done)
		}
		s.closeMu.Unlock()
		if s.cancel != nil {
			s.cancel()
		}
	})
}

// drop closes the TCP connection without a close handshake, for a peer
// that can no longer take part in one.
func (s *Stream) drop(reason string) {
	s.closeMu.Lock()
	if e := s.endingLocked(); e.dropReason == "" {
		e.dropReason = reason
	}
	s.closeMu.Unlock()
	s.closeConn()
}

// endingLocked returns the stream's closeLog, made on first use, with
// closeMu held.
func (s *Stream) endingLocked() *closeLog {
	if s.ending == nil {
		s.ending = new(closeLog)
	}
	return s.ending
}

// connClosed reports whether the TCP connection is closed.
func (s *Stream) connClosed() bool {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	return s.connGone
}

// waitClosed waits for the TCP connection to close.
func (s *Stream) waitClosed() {
	s.closeMu.Lock()
	if s.connGone {
		s.closeMu.Unlock()
		return
	}
	if s.done == nil {
		s.done = make(chan struct{})
	}
	done := s.done
	s.closeMu.Unlock()
	<-done
}

// closeCodes returns the close frames sent and received.
func (s *Stream) closeCodes() (sent, received closeRecord) {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.ending == nil {
		return closeRecord{}, closeRecord{}
	}
	return s.ending.sent, s.ending.rcvd
}

// dropped returns why the connection was dropped without a close
// handshake, or "".
func (s *Stream) dropped() string {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.ending == nil {
		return ""
	}
	return s.ending.dropReason
}

// LocalAddr returns the server's address of the connection.
func (s *Stream) LocalAddr() net.Addr { return s.conn.LocalAddr() }

// RemoteAddr returns the client's address.
func (s *Stream) RemoteAddr() net.Addr { return s.remoteAddr }

// SetDeadline sets the read and write deadlines of the connection.
func (s *Stream) SetDeadline(t time.Time) error {
	if err := s.conn.SetReadDeadline(t); err != nil {
		return err
	}
	return s.SetWriteDeadline(t)
}

// SetReadDeadline sets the deadline for Read. An expired deadline fails the
// Read under way and leaves the stream usable once the deadline is moved.
func (s *Stream) SetReadDeadline(t time.Time) error { return s.conn.SetReadDeadline(t) }

// SetWriteDeadline sets the deadline for Write. A write that expires closes
// the stream: part of a frame may already be out. The handler's
// WriteTimeout still bounds each write when it comes first, the write under
// way included.
func (s *Stream) SetWriteDeadline(t time.Time) error {
	eff := t.UnixNano()
	if t.IsZero() {
		s.writeDeadline.Store(0)
		eff = 0
	} else {
		s.writeDeadline.Store(eff)
	}
	for _, bound := range []int64{s.armedUntil.Load(), s.closeDeadline.Load()} {
		if bound != 0 && (eff == 0 || bound < eff) {
			eff = bound
		}
	}
	if eff == 0 {
		return s.conn.SetWriteDeadline(time.Time{})
	}
	return s.conn.SetWriteDeadline(time.Unix(0, eff))
}

// isTimeout reports whether err is an expired deadline.
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
