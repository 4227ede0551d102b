package mqttws

import (
	"fmt"
	"io"
	"sync"

	"github.com/gobwas/ws"
	"github.com/klauspost/compress/flate"
)

// Reading: an inflater inflates each compressed message as it is read,
// from a messageSource that hands the decompressor the message's payload,
// frame after frame, unmasked, and answers the control frames in between.

// inflateTail ends every message given to the decompressor: RFC 7692's
// 00 00 ff ff (an empty stored block, which senders strip), then an empty
// final stored block, so that the decompressor ends the message with io.EOF
// instead of waiting for more.
var inflateTail = [...]byte{0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff}

// errCloseInMessage reports a close frame between the frames of a
// compressed message; its body is in messageSource.closeBody.
var errCloseInMessage = fmt.Errorf("mqttws: close frame inside a compressed message")

// errInflateDeadline is what Read returns after a read deadline expired
// inside a compressed message. It is not a timeout itself, so that a caller
// that retries on timeouts does not spin.
var errInflateDeadline = fmt.Errorf("mqttws: the read deadline expired inside a compressed message, which cannot be resumed: the stream cannot be read any further")

// flateReader is what flate.NewReader returns.
type flateReader interface {
	Read(p []byte) (int, error)
	Close() error
	flate.Resetter
}

// inflaters holds the decompressors of no message.
var inflaters sync.Pool

// inflater inflates the current compressed message of a stream.
type inflater struct {
	src      messageSource
	f        flateReader // nil between messages
	limit    int64       // inflated bytes per message; 0: no limit
	produced int64       // inflated bytes of the current message so far
	pending  error       // met after bytes that Read returned: for the next Read
	probe    [1]byte

	// A message that is one stored block is read without a decompressor
	// (see beginStored): storing is set while it is, stored counts the
	// bytes left.
	storing bool
	stored  int64

	decompressed int64 // messages given to a decompressor so far
}

// read returns inflated bytes of the current message. Once the message is
// over it gives back its decompressor and clears fr.compressed; it may
// then return no bytes and no error.
func (in *inflater) read(p []byte) (int, error) {
	if err := in.pending; err != nil {
		in.pending = nil
		return 0, err
	}
	if in.storing || (in.f == nil && in.beginStored()) {
		return in.readStored(p)
	}
	if in.f == nil {
		in.begin()
	}
	n := 0
	for {
		m, err := in.inflate(p[n:])
		n += m
		if err != nil {
			if n > 0 {
				in.pending = err
				return n, nil
			}
			return 0, err
		}
		// Go on while the rest of the message is buffered: then inflating
		// more cannot wait for the network.
		if in.f == nil || n == len(p) || !in.src.buffered() {
			return n, nil
		}
	}
}

// storedHeaderSize is the size of a stored block's header at the start of
// a message (RFC 1951 section 3.2.4): three bits BFINAL and BTYPE 00 padded
// to a byte, then LEN and its complement NLEN, little-endian.
const storedHeaderSize = 5

// beginStored starts the message whose first frame header was just read as
// one stored block, when it is one: what a sender's deflate makes of bytes
// that do not shrink (browsers and Node's ws compress every message, media
// and ciphertext included). It is then read straight from the read buffer
// into the caller's slice, without taking a decompressor or copying the
// bytes through its window. It applies to a single frame that fits a read
// buffer (it waits for all of it) and holds a valid stored block header and its bytes, then either
// nothing after a final block, or the one byte that starts the empty
// stored block RFC 7692 has senders end a message with (its LEN and NLEN,
// 00 00 ff ff, stripped): exactly the messages the decompressor would read
// as those bytes and nothing else. Any other message, a broken one
// included, goes to the decompressor, which judges it. It reports whether
// it started the message.
func (in *inflater) beginStored() bool {
	fr := &in.src.s.fr
	b := &fr.buf
	if fr.fragmented || fr.remaining < storedHeaderSize || fr.remaining > int64(b.pool.size) {
		return false
	}
	unmasked := func(i int) byte { return b.buf[b.r+i] ^ fr.mask[(fr.offset+i)&3] }
	if b.buffered() > 0 && unmasked(0)&0b110 != 0 {
		return false // a Huffman block: no need to wait for the frame
	}
	// The frame fits a pooled buffer: wait for all of it, as the
	// decompressor would. A read error leaves the buffer as it was, for
	// the decompressor to meet.
	for int64(b.buffered()) < fr.remaining {
		if err := b.fill(int(fr.remaining)); err != nil {
			return false
		}
	}
	n := int64(unmasked(1)) | int64(unmasked(2))<<8
	nlen := uint16(unmasked(3)) | uint16(unmasked(4))<<8
	first := unmasked(0)
	final := first&1 != 0
	if first&0b110 != 0 || uint16(n) != ^nlen || (in.limit > 0 && n > in.limit) {
		return false
	}
	switch after := fr.remaining - storedHeaderSize - n; {
	case after == 0 && final:
	case after == 1 && unmasked(int(storedHeaderSize+n))&0b110 == 0:
	default:
		return false
	}
	d := in.src.s.deflate
	d.messagesIn.Add(1)
	d.wireIn.Add(fr.remaining)
	b.discard(storedHeaderSize)
	fr.offset += storedHeaderSize
	fr.remaining -= storedHeaderSize
	in.storing, in.stored = true, n
	return true
}

// readStored reads the rest of a message that is one stored block.
func (in *inflater) readStored(p []byte) (int, error) {
	fr := &in.src.s.fr
	n := 0
	var err error
	if in.stored > 0 {
		n, err = fr.readPayload(p[:min(int64(len(p)), in.stored)])
		in.stored -= int64(n)
	}
	if in.stored == 0 {
		// The byte that starts the empty block, if any, is buffered.
		fr.buf.discard(int(fr.remaining))
		fr.offset += int(fr.remaining)
		fr.remaining = 0
		in.storing = false
		fr.compressed = false
	}
	if n > 0 && err != nil {
		in.pending = err
		return n, nil
	}
	return n, err
}

// begin starts a compressed message whose first frame header was just read.
func (in *inflater) begin() {
	in.src.tail = 0
	in.src.payload = false
	in.src.err = nil
	in.produced = 0
	in.decompressed++
	if f, ok := inflaters.Get().(flateReader); ok {
		_ = f.Reset(&in.src, nil)
		in.f = f
	} else {
		in.f = flate.NewReader(&in.src).(flateReader)
	}
	d := in.src.s.deflate
	d.messagesIn.Add(1)
	d.wireIn.Add(in.src.s.fr.remaining)
}

// inflate reads once from the decompressor, within the size limit.
func (in *inflater) inflate(p []byte) (int, error) {
	buf := p
	over := false
	if in.limit > 0 {
		if left := in.limit - in.produced; left <= 0 {
			buf, over = in.probe[:], true // one more byte tells
		} else if int64(len(buf)) > left {
			buf = buf[:left]
		}
	}
	n, err := in.f.Read(buf)
	if over && n > 0 {
		return 0, &CloseError{
			Code:   CloseMessageTooBig,
			Reason: fmt.Sprintf("compressed message inflates past the limit of %d bytes", in.limit),
		}
	}
	in.produced += int64(n)
	switch {
	case err == nil:
		return n, nil
	case err == io.EOF:
		return n, in.end()
	default:
		return n, in.failure(err)
	}
}

// end finishes a message that the decompressor saw to its end: whatever
// follows a final deflate block is skipped (a sender may end with one), and
// the decompressor goes back to its pool.
func (in *inflater) end() error {
	if err := in.src.skipRest(); err != nil {
		return in.failure(err)
	}
	in.release()
	in.src.s.fr.compressed = false
	return nil
}

// failure tells the error of the source (the connection, a protocol
// violation in a frame header, a close frame) from bad compressed data,
// which the decompressor reports in its own words.
func (in *inflater) failure(err error) error {
	switch src := in.src.err; {
	case src == io.EOF:
		return io.ErrUnexpectedEOF // the connection ended inside the message
	case src != nil:
		return src
	}
	return &CloseError{Code: CloseInvalidPayload, Reason: "invalid compressed data: " + err.Error(), Err: err}
}

// release gives the decompressor back, keeping no reference to the stream.
func (in *inflater) release() {
	in.storing = false
	if in.f == nil {
		return
	}
	_ = in.f.Reset(noInput{}, nil)
	inflaters.Put(in.f)
	in.f = nil
}

// noInput is the source of a pooled decompressor.
type noInput struct{}

func (noInput) Read([]byte) (int, error) { return 0, io.EOF }
func (noInput) ReadByte() (byte, error)  { return 0, io.EOF }

// messageSource is the compressed payload of the current message, as
// the decompressor reads it (a flate.Reader, so that it adds no buffer of its
// own), followed by inflateTail.
type messageSource struct {
	s         *Stream
	payload   bool   // a payload byte was read
	tail      int    // bytes of inflateTail returned
	err       error  // the first error met; the decompressor rewords it
	closeBody []byte // the body of a close frame met inside the message
	one       [1]byte
}

func (m *messageSource) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	fr := &m.s.fr
	for m.err == nil {
		switch {
		case fr.remaining > 0:
			n, err := fr.readPayload(p)
			if n > 0 {
				m.payload = true
				return n, nil // an error comes back on the next read
			}
			m.err = err
		case fr.fragmented:
			m.err = m.nextFrame()
		case m.tail == 0 && !m.payload:
			// An empty payload is not deflate data, but zlib takes it
			// for an empty message, and so do browsers: so does this.
			m.tail = len(syncMarker)
		case m.tail < len(inflateTail):
			n := copy(p, inflateTail[m.tail:])
			m.tail += n
			return n, nil
		default:
			return 0, io.EOF
		}
	}
	return 0, m.err
}

// ReadByte is Read for one byte, with a fast path for a buffered one:
// the decompressor reads Huffman codes a byte at a time.
func (m *messageSource) ReadByte() (byte, error) {
	fr := &m.s.fr
	if b := &fr.buf; fr.remaining > 0 && b.r < b.w {
		c := b.buf[b.r] ^ fr.mask[fr.offset&3]
		b.discard(1)
		fr.offset++
		fr.remaining--
		m.payload = true
		return c, nil
	}
	if _, err := m.Read(m.one[:]); err != nil {
		return 0, err
	}
	return m.one[0], nil
}

// buffered reports whether the rest of the message is buffered, so that
// reading it cannot wait for the network.
func (m *messageSource) buffered() bool {
	fr := &m.s.fr
	return m.tail > 0 || (!fr.fragmented && fr.remaining <= int64(fr.buf.buffered()))
}

// nextFrame reads the header of the message's next frame, answering the
// control frames in between.
func (m *messageSource) nextFrame() error {
	h, payload, err := m.s.nextFrame()
	if err != nil {
		return err
	}
	switch h.OpCode {
	case ws.OpPing:
		m.s.writeControl(ws.OpPong, payload)
	case ws.OpClose:
		m.closeBody = payload
		return errCloseInMessage
	case ws.OpContinuation:
		m.s.deflate.wireIn.Add(h.Length)
	}
	return nil
}

// skipRest consumes the rest of the message's payload without inflating
// it.
func (m *messageSource) skipRest() error {
	fr := &m.s.fr
	for m.err == nil && m.tail == 0 {
		switch {
		case fr.remaining > 0:
			m.err = fr.skipPayload()
		case fr.fragmented:
			m.err = m.nextFrame()
		default:
			return nil
		}
	}
	return m.err
}
