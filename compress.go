package mqttws

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"math"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
)

// permessage-deflate (RFC 7692), without context takeover either way: each
// message is compressed and inflated on its own, so that compressors and
// decompressors come from pools for the length of one message and an idle
// connection holds none. (A compress/flate writer is about 1.2 MiB at level
// 1 and a reader about 40 KiB: kept per connection, as context takeover
// needs, they would cost 30 times the memory of an idle connection.)

// Defaults of the CompressionOptions fields whose zero value means "the
// default".
const (
	// DefaultCompressionLevel is compress/flate's BestSpeed: the only level
	// whose compressor resets in constant time. Without context takeover
	// the compressor is reset for every message, and levels 2 to 9 clear
	// 640 KiB of hash tables each time.
	DefaultCompressionLevel = flate.BestSpeed
	// DefaultCompressionThreshold is the size under which a Write goes out
	// uncompressed: MQTT acknowledgements and pings (2 to 5 bytes), and most
	// packets under it, gain nothing from deflate's headers and Huffman
	// tables.
	DefaultCompressionThreshold = 128
	// DefaultMaxInflatedSize bounds what one compressed message from a
	// client may inflate to (deflate reaches a ratio of about 1000:1).
	DefaultMaxInflatedSize = 16 << 20
)

// CompressionOptions configures permessage-deflate (RFC 7692), the
// WebSocket compression that browsers and Node's ws offer on every
// connection. A client that does not offer it is served uncompressed.
//
// The server accepts the client's offer with server_no_context_takeover and
// client_no_context_takeover: every message is compressed on its own, with
// a compressor taken from a pool for the length of one Write and a
// decompressor for the length of one message, so that an idle connection
// holds neither. Context takeover would compress small messages better, but
// a connection would then keep a compressor (about 1.2 MiB) and a
// decompressor (about 40 KiB) for its whole life, and it is not offered. An
// offer the server cannot honor (server_max_window_bits below 15:
// compress/flate always uses a 32 KiB window) is declined, and the
// connection is served uncompressed.
type CompressionOptions struct {
	// Level is the compress/flate level of the messages sent: 1
	// (flate.BestSpeed) to 9 (flate.BestCompression), -1
	// (flate.DefaultCompression, level 6) or -2 (flate.HuffmanOnly). Zero
	// means DefaultCompressionLevel. Levels 2 to 9 clear 640 KiB of tables
	// per message; see DefaultCompressionLevel.
	Level int

	// Threshold is the size in bytes under which a Write goes out
	// uncompressed (RSV1 clear). Zero means DefaultCompressionThreshold; a
	// negative value compresses every Write. Writes that would not shrink
	// go out uncompressed too: one whose last 512 bytes look random (nearly
	// as many distinct byte values as random bytes hold: media,
	// ciphertext) is not even tried; one whose compressed form fits one
	// frame goes out as it is when that form is not smaller; a larger one
	// when its first half-frame (8 KiB, or half of WriteFrameSize) shrinks
	// by less than an eighth.
	Threshold int

	// MaxInflatedSize bounds the size a compressed message from a client
	// may inflate to; past it the connection closes with 1009
	// (CloseMessageTooBig). Messages are inflated as they are read, never
	// held whole, so the bound is on CPU, not memory: a small message that
	// inflates to gigabytes (a "zip bomb") costs what a message of this size
	// costs, and no more. Zero means DefaultMaxInflatedSize; a negative
	// value sets no limit.
	MaxInflatedSize int64
}

// validCompressionLevel reports whether compress/flate takes level; zero
// stands for the default.
func validCompressionLevel(level int) bool {
	return level >= flate.HuffmanOnly && level <= flate.BestCompression
}

// deflateConfig is what a stream takes from CompressionOptions.
type deflateConfig struct {
	level       int
	threshold   int   // Writes of at least this many bytes are compressed
	maxInflated int64 // 0: no limit
	frameSize   int   // compressed payload bytes per frame
}

func (o *CompressionOptions) config(writeFrameSize int) deflateConfig {
	c := deflateConfig{
		level:       o.Level,
		threshold:   o.Threshold,
		maxInflated: orDefault(o.MaxInflatedSize, DefaultMaxInflatedSize),
		frameSize:   deflateBufferSize - len(syncMarker),
	}
	if c.level == 0 {
		c.level = DefaultCompressionLevel
	}
	switch {
	case c.threshold == 0:
		c.threshold = DefaultCompressionThreshold
	case c.threshold < 0:
		c.threshold = 1
	}
	if writeFrameSize > 0 {
		c.frameSize = min(c.frameSize, writeFrameSize)
	}
	return c
}

// negotiateDeflate picks the first permessage-deflate offer of the request
// that the server can honor (RFC 7692 section 5) and returns the
// Sec-WebSocket-Extensions value that accepts it, or "" to decline them all.
// An offer with unknown, repeated or invalid parameters is declined, as the
// RFC asks, not the handshake. (wsflate.Extension is not used: it declines
// any offer naming server_max_window_bits unless configured to always
// answer with it, and then it accepts values it cannot honor.)
func negotiateDeflate(h http.Header) string {
	for _, v := range h.Values("Sec-WebSocket-Extensions") {
		offers, _ := httphead.ParseOptions([]byte(v), nil)
		for _, offer := range offers {
			if !bytes.Equal(offer.Name, wsflate.ExtensionNameBytes) {
				continue
			}
			var p wsflate.Parameters
			if err := p.Parse(offer); err != nil {
				continue
			}
			if p.ServerMaxWindowBits.Defined() && p.ServerMaxWindowBits < 15 {
				continue // compress/flate's window is always 32 KiB
			}
			accept := wsflate.Parameters{
				ServerNoContextTakeover: true,
				ClientNoContextTakeover: true,
				// An offer naming it must get it back (RFC 7692 7.1.2.1).
				ServerMaxWindowBits: p.ServerMaxWindowBits,
			}
			var b bytes.Buffer
			if _, err := httphead.WriteOptions(&b, []httphead.Option{accept.Option()}); err != nil {
				continue
			}
			return b.String()
		}
	}
	return ""
}

// streamDeflate is the permessage-deflate state of a stream that
// negotiated it: settings, the inflater, and counters.
type streamDeflate struct {
	cfg deflateConfig
	in  inflater

	bytesIn, wireIn, messagesIn    atomic.Int64
	bytesOut, wireOut, messagesOut atomic.Int64
}

func newStreamDeflate(s *Stream, cfg *deflateConfig) *streamDeflate {
	d := &streamDeflate{cfg: *cfg}
	d.in.src.s = s
	d.in.limit = cfg.maxInflated
	return d
}

// Reading: an inflater inflates each compressed message as it is read,
// from a messageSource that hands compress/flate the message's payload,
// frame after frame, unmasked, and answers the control frames in between.

// inflateTail ends every message given to the decompressor: RFC 7692's
// 00 00 ff ff (an empty stored block, which senders strip), then an empty
// final stored block, so that compress/flate ends the message with io.EOF
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
}

// read returns inflated bytes of the current message. Once the message is
// over it gives back its decompressor and clears fr.compressed; it may
// then return no bytes and no error.
func (in *inflater) read(p []byte) (int, error) {
	if err := in.pending; err != nil {
		in.pending = nil
		return 0, err
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

// begin starts a compressed message whose first frame header was just read.
func (in *inflater) begin() {
	in.src.tail = 0
	in.src.payload = false
	in.src.err = nil
	in.produced = 0
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
// which compress/flate reports in its own words.
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
// compress/flate reads it (a flate.Reader, so that it adds no buffer of its
// own), followed by inflateTail.
type messageSource struct {
	s         *Stream
	payload   bool   // a payload byte was read
	tail      int    // bytes of inflateTail returned
	err       error  // the first error met; compress/flate rewords it
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
// compress/flate reads Huffman codes a byte at a time.
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

// Writing: a Write of at least the threshold is compressed into a pooled
// buffer by a pooled compressor. When the whole message fits the buffer the
// compressor goes back to its pool before the frame is sent, so that a
// client slow to read holds a buffer, not a compressor; a larger message is
// sent in frames as the buffer fills.

// deflateBufferSize is the size of the pooled buffers compressed messages
// are written into: the largest frame of a compressed message (unless
// WriteFrameSize is smaller), and of a message that can still go out
// uncompressed when it does not shrink.
const deflateBufferSize = 16 << 10

// sampleSize is the size of the end of a message whose byte values tell
// whether it is worth compressing.
const sampleSize = 512

// looksRandom reports whether the last sampleSize bytes of p hold nearly
// as many distinct byte values as random bytes would (more than 80% of
// them): random data, ciphertext and compressed media do not shrink, and
// compressing them costs compress/flate tens of microseconds per KiB for
// nothing. Text and JSON hold a few dozen values, binary records some
// more; base64 at most 64. Measured cost: a few hundred nanoseconds.
func looksRandom(p []byte) bool {
	sample := p[len(p)-min(len(p), sampleSize):]
	var seen [256]bool
	distinct := 0
	for _, b := range sample {
		if !seen[b] {
			seen[b] = true
			distinct++
		}
	}
	// n random bytes hold 256 × (1 − (255/256)^n) distinct values on
	// average.
	expected := 256 * (1 - math.Pow(255.0/256, float64(len(sample))))
	return float64(distinct) > 0.8*expected
}

// minProbe is the least part of a message compressed to find out whether it
// shrinks before frames go out.
const minProbe = 256

// syncMarker ends a flush of compress/flate; RFC 7692 has the sender strip
// it from each message.
var syncMarker = []byte{0x00, 0x00, 0xff, 0xff}

var deflateBuffers = sync.Pool{New: func() any {
	b := make([]byte, deflateBufferSize)
	return &b
}}

// deflaters holds compressors by level, from flate.HuffmanOnly (-2) up.
var deflaters [flate.BestCompression - flate.HuffmanOnly + 1]sync.Pool

// deflater is a pooled compressor with the sink it writes to.
type deflater struct {
	w    *flate.Writer
	sink deflateSink
}

func getDeflater(level int) *deflater {
	if d, ok := deflaters[level-flate.HuffmanOnly].Get().(*deflater); ok {
		d.w.Reset(&d.sink) // no context takeover
		return d
	}
	d := new(deflater)
	d.w, _ = flate.NewWriter(&d.sink, level) // the level was checked by the Handler
	return d
}

func putDeflater(level int, d *deflater) {
	d.sink = deflateSink{}
	deflaters[level-flate.HuffmanOnly].Put(d)
}

// deflateSink takes what the compressor writes and sends it as the frames
// of one message, each frame holding up to len(buf)-4 bytes: the last four
// bytes written may be the start of the sync marker, which must not go out.
type deflateSink struct {
	s      *Stream
	buf    []byte
	n      int   // bytes in buf
	frames int   // frames sent
	wire   int64 // payload bytes sent
}

func (k *deflateSink) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if k.n == len(k.buf) {
			if err := k.send(false, k.buf[:k.n-len(syncMarker)]); err != nil {
				return 0, err
			}
			k.n = copy(k.buf, k.buf[k.n-len(syncMarker):k.n])
		}
		c := copy(k.buf[k.n:], p)
		k.n += c
		p = p[c:]
	}
	return total, nil
}

// send sends a frame of the message: the first is a binary frame with RSV1
// set, the others are continuations.
func (k *deflateSink) send(fin bool, payload []byte) error {
	h := ws.Header{Fin: fin, OpCode: ws.OpContinuation}
	if k.frames == 0 {
		h.OpCode, h.Rsv = ws.OpBinary, rsvCompressed
	}
	k.frames++
	k.wire += int64(len(payload))
	return k.s.writeHeaderLocked(h, payload)
}

// writeCompressedLocked sends p as one compressed message, with writeMu
// held. It reports false, having sent nothing, when p would not shrink.
func (s *Stream) writeCompressedLocked(p []byte) (bool, error) {
	if looksRandom(p) {
		return false, nil
	}
	cfg := &s.deflate.cfg
	d := getDeflater(cfg.level)
	buf := deflateBuffers.Get().(*[]byte)
	defer deflateBuffers.Put(buf)
	k := &d.sink
	k.s, k.buf = s, (*buf)[:cfg.frameSize+len(syncMarker)]

	rest := p
	if probe := cfg.frameSize / 2; len(p) > cfg.frameSize && probe >= minProbe {
		// The message may not fit the buffer, and frames will go out
		// before its end: find out first whether it shrinks (random
		// data, media and ciphertext do not), compressing a part of it
		// that does fit. A sync flush in a message is no harm.
		_, err := d.w.Write(p[:probe])
		if err == nil {
			err = d.w.Flush()
		}
		if err == nil && k.frames == 0 && (k.n-len(syncMarker))*8 > probe*7 {
			putDeflater(cfg.level, d)
			return false, nil
		}
		rest = p[probe:]
	}
	_, err := d.w.Write(rest)
	if err == nil {
		err = d.w.Flush()
	}
	if err == nil && (k.n < len(syncMarker) || !bytes.Equal(k.buf[k.n-len(syncMarker):k.n], syncMarker)) {
		err = fmt.Errorf("compress/flate's flush did not end with 00 00 ff ff")
	}
	var wire int64
	if k.frames == 0 {
		// The whole message is in buf: the compressor is free before it
		// goes out.
		payload := k.buf[:max(k.n-len(syncMarker), 0)]
		putDeflater(cfg.level, d)
		if err == nil {
			if len(payload) >= len(p) {
				return false, nil
			}
			err = s.writeHeaderLocked(ws.Header{Fin: true, OpCode: ws.OpBinary, Rsv: rsvCompressed}, payload)
			wire = int64(len(payload))
		}
	} else {
		if err == nil {
			err = k.send(true, k.buf[:k.n-len(syncMarker)])
		}
		wire = k.wire
		putDeflater(cfg.level, d)
	}
	if err != nil {
		if s.writeErr == nil { // not a failed write: the compressor failed
			s.writeErr = fmt.Errorf("mqttws: compress: %w", err)
			s.closeConn()
		}
		return false, s.writeErr
	}
	s.deflate.bytesOut.Add(int64(len(p)))
	s.deflate.wireOut.Add(wire)
	s.deflate.messagesOut.Add(1)
	return true, nil
}
