package mqttws

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/gobwas/ws"
)

// frameReader reads the frames a client sends (RFC 6455 section 5) and
// yields the payload of binary frames as one byte stream. Data frames are
// never buffered whole: the payload goes into the caller's slice as it
// arrives and is unmasked there, so no allocation depends on a length the
// peer declares.
type frameReader struct {
	buf          readBuffer
	maxFrameSize int64 // 0: no limit
	deflate      bool  // permessage-deflate was negotiated: RSV1 may mark a message compressed

	fragmented bool    // inside a message whose last frame has not come yet
	compressed bool    // the current message is compressed (its first frame had RSV1)
	mask       [4]byte // the current data frame's mask
	remaining  int64   // payload bytes of the current data frame still to read
	offset     int     // payload bytes of the current data frame already unmasked

	// Frames and payload bytes read but not yet added to the stream's
	// counters (see Stream.publishCounts).
	frames, bytes int64

	// control holds the last control frame's payload, unmasked; made with
	// the first control frame that has one (clients seldom send any but
	// the close frame that ends the connection).
	control *[ws.MaxControlFramePayloadSize]byte
}

func (fr *frameReader) init(src io.Reader, pool *bufferPool, maxFrameSize int64, t *traffic) {
	fr.buf.init(src, pool, t)
	fr.maxFrameSize = maxFrameSize
}

// next reads the next frame header and checks it. For a control frame it
// also reads the payload, unmasked, valid until the next call. For a data
// frame, readPayload then reads the payload. A frame is consumed only once
// it has been read whole up to its payload, so a read deadline that expires
// half-way leaves the reader ready to try again.
//
// Errors are those of the source, or a *CloseError for a protocol violation.
func (fr *frameReader) next() (ws.Header, []byte, error) {
	b, err := fr.buf.peek(ws.MinHeaderSize)
	if err != nil {
		return ws.Header{}, nil, err
	}
	size := headerSize(b)
	b, err = fr.buf.peek(size)
	if err != nil {
		return ws.Header{}, nil, err
	}
	h := parseHeader(b)
	if h.Length < 0 {
		return h, nil, &CloseError{Code: CloseProtocolError, Reason: "64-bit payload length with the most significant bit set"}
	}
	rsv1 := h.Rsv&rsvCompressed != 0
	if rsv1 {
		if err := fr.checkCompressedBit(h); err != nil {
			return h, nil, err
		}
		h.Rsv &^= rsvCompressed
	}
	state := ws.StateServerSide
	if fr.fragmented {
		state = state.Set(ws.StateFragmented)
	}
	if err := ws.CheckHeader(h, state); err != nil {
		return h, nil, &CloseError{Code: CloseProtocolError, Reason: err.Error()}
	}

	if h.OpCode.IsControl() {
		// The payload (at most 125 bytes, CheckHeader saw to it) is peeked
		// with the header, so that a control frame is consumed whole or not
		// at all.
		total := size + int(h.Length)
		b, err = fr.buf.peek(total)
		if err != nil {
			return ws.Header{}, nil, err
		}
		if fr.control == nil && h.Length > 0 {
			fr.control = new([ws.MaxControlFramePayloadSize]byte)
		}
		var payload []byte
		if fr.control != nil {
			payload = fr.control[:h.Length]
		}
		copy(payload, b[size:total])
		ws.Cipher(payload, h.Mask, 0)
		fr.buf.discard(total)
		return h, payload, nil
	}
	if h.OpCode == ws.OpText {
		return h, nil, &CloseError{Code: CloseUnsupportedData, Reason: "text frames are not allowed (MQTT-6.0.0-1)"}
	}
	if fr.maxFrameSize > 0 && h.Length > fr.maxFrameSize {
		return h, nil, &CloseError{
			Code:   CloseMessageTooBig,
			Reason: fmt.Sprintf("frame of %d bytes is over the limit of %d", h.Length, fr.maxFrameSize),
		}
	}
	fr.buf.discard(size)
	if h.OpCode != ws.OpContinuation {
		fr.compressed = rsv1
	}
	fr.fragmented = !h.Fin
	fr.remaining = h.Length
	fr.offset = 0
	fr.mask = h.Mask
	return h, nil, nil
}

// rsvCompressed is RSV1 in ws.Header.Rsv: permessage-deflate's "Per-Message
// Compressed" bit (RFC 7692 section 6).
var rsvCompressed = ws.Rsv(true, false, false)

// checkCompressedBit applies RFC 7692's rules to a frame with RSV1 set: only
// the first frame of a data message may carry it, and only once
// permessage-deflate was negotiated.
func (fr *frameReader) checkCompressedBit(h ws.Header) *CloseError {
	switch {
	case !fr.deflate:
		return &CloseError{Code: CloseProtocolError, Reason: "RSV1 set, but permessage-deflate was not negotiated"}
	case h.OpCode.IsControl():
		return &CloseError{Code: CloseProtocolError, Reason: "RSV1 set on a control frame"}
	case h.OpCode == ws.OpContinuation:
		return &CloseError{Code: CloseProtocolError, Reason: "RSV1 set on a continuation frame: only a message's first frame may carry it"}
	}
	return nil
}

// dataHeaderBuffered reports whether the whole header of an uncompressed
// data frame is buffered already, so that next returns it without reading.
// (The frames of a compressed message are read by the inflater.)
func (fr *frameReader) dataHeaderBuffered() bool {
	b := fr.buf.buf[fr.buf.r:fr.buf.w]
	return len(b) >= ws.MinHeaderSize && !ws.OpCode(b[0]&0x0f).IsControl() && b[0]&0x40 == 0 && len(b) >= headerSize(b)
}

// headerSize returns the size of the frame header whose first two bytes are b.
func headerSize(b []byte) int {
	size := ws.MinHeaderSize
	if b[1]&0x80 != 0 {
		size += 4
	}
	switch b[1] & 0x7f {
	case 126:
		size += 2
	case 127:
		size += 8
	}
	return size
}

// parseHeader decodes the frame header b, whose size headerSize gave. A
// 64-bit length with its most significant bit set, which RFC 6455 section
// 5.2 forbids, comes out negative. (It decodes what ws.ReadHeaderBuffer
// does, FuzzParseHeader checks it, without an io.Reader to go through.)
func parseHeader(b []byte) ws.Header {
	h := ws.Header{
		Fin:    b[0]&bitFin != 0,
		Rsv:    (b[0] >> 4) & 0x07,
		OpCode: ws.OpCode(b[0] & 0x0f),
		Masked: b[1]&bitMasked != 0,
		Length: int64(b[1] &^ bitMasked),
	}
	rest := b[2:]
	switch h.Length {
	case 126:
		h.Length = int64(binary.BigEndian.Uint16(rest))
		rest = rest[2:]
	case 127:
		h.Length = int64(binary.BigEndian.Uint64(rest))
		rest = rest[8:]
	}
	if h.Masked {
		copy(h.Mask[:], rest)
	}
	return h
}

// readPayload reads payload bytes of the current data frame into p and
// unmasks them in place.
func (fr *frameReader) readPayload(p []byte) (int, error) {
	if int64(len(p)) > fr.remaining {
		p = p[:fr.remaining]
	}
	n, err := fr.buf.read(p)
	unmask(p[:n], fr.mask, fr.offset)
	fr.offset += n
	fr.remaining -= int64(n)
	if err == io.EOF && fr.remaining > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// skipPayload consumes payload bytes of the current data frame without
// copying them: those buffered, or what one read brings.
func (fr *frameReader) skipPayload() error {
	if fr.buf.buffered() == 0 {
		if err := fr.buf.fill(1); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	n := int(min(int64(fr.buf.buffered()), fr.remaining))
	fr.buf.discard(n)
	fr.offset += n
	fr.remaining -= int64(n)
	return nil
}

// frameWriter writes server frames: unmasked, final. A frame with a small
// payload is copied, header and payload, into one pooled buffer and goes out
// in one write; a larger one goes out as header and payload in one writev
// (net.Buffers), the payload never copied.
type frameWriter struct {
	dst io.Writer
}

// frameVector is what a vectored write holds: the header, and the two
// buffers handed to writev. It comes from a pool for the time of one write,
// so that a stream carries none of it (an idle connection's Stream stays
// in a smaller size class).
type frameVector struct {
	header [ws.MaxHeaderSize]byte
	vec    [2][]byte
	bufs   net.Buffers
}

var frameVectors = sync.Pool{New: func() any { return new(frameVector) }}

// buffersWriter is a destination that writes several buffers its own way
// (an HTTP/2 stream: one flush for a frame's header and payload); TCP
// connections take them in one writev through net.Buffers.
type buffersWriter interface {
	writeBuffers(bufs *net.Buffers) (int64, error)
}

// frameBufferSize is the size of the buffers small frames are assembled in.
// Payloads of up to frameBufferSize-ws.MaxHeaderSize bytes are copied next
// to their header rather than handed to writev beside it: on loopback here,
// one write of a copy costs about a quarter less CPU than a writev of two
// buffers from 16 B to 1 KiB, about the same at 4 KiB, and a writev wins
// from 64 KiB (BenchmarkWrite in benchmarks/frameio).
const frameBufferSize = 4096

// frameBuffers are the buffers small frames are assembled in, shared by all
// streams: a stream holds one only for the time of a write.
var frameBuffers = sync.Pool{New: func() any { return new([frameBufferSize]byte) }}

// writeFrame writes one frame with header h (its Length set here). On
// error the connection is in an unknown state (part of a frame may have
// gone out) and must be closed.
func (fw *frameWriter) writeFrame(h ws.Header, payload []byte) error {
	h.Length = int64(len(payload))
	bw, vectored := fw.dst.(buffersWriter)
	if !vectored && len(payload) <= frameBufferSize-ws.MaxHeaderSize {
		buf := frameBuffers.Get().(*[frameBufferSize]byte)
		n := putHeader(buf[:], h)
		n += copy(buf[n:], payload)
		_, err := fw.dst.Write(buf[:n])
		frameBuffers.Put(buf)
		return err
	}
	v := frameVectors.Get().(*frameVector)
	v.vec[0] = v.header[:putHeader(v.header[:], h)]
	v.vec[1] = payload
	v.bufs = v.vec[:]
	if len(payload) == 0 {
		v.bufs = v.vec[:1]
	}
	var err error
	if vectored {
		_, err = bw.writeBuffers(&v.bufs)
	} else {
		_, err = v.bufs.WriteTo(fw.dst)
	}
	v.vec = [2][]byte{} // keep no reference to the caller's payload
	v.bufs = nil
	frameVectors.Put(v)
	return err
}

// putHeader encodes h at the start of b, which has room for
// ws.MaxHeaderSize bytes, and returns its size. (It writes what
// ws.WriteHeaderBuffer does, FuzzPutHeader checks it, without an io.Writer
// to go through.)
func putHeader(b []byte, h ws.Header) int {
	b[0] = h.Rsv<<4 | byte(h.OpCode)
	if h.Fin {
		b[0] |= bitFin
	}
	n := 2
	switch {
	case h.Length < 126:
		b[1] = byte(h.Length)
	case h.Length <= 0xffff:
		b[1] = 126
		binary.BigEndian.PutUint16(b[2:], uint16(h.Length))
		n += 2
	default:
		b[1] = 127
		binary.BigEndian.PutUint64(b[2:], uint64(h.Length))
		n += 8
	}
	if h.Masked {
		b[1] |= bitMasked
		n += copy(b[n:], h.Mask[:])
	}
	return n
}
