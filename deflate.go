package mqttws

import (
	"bytes"
	"fmt"
	"math"
	"sync"

	"github.com/gobwas/ws"
	"github.com/klauspost/compress/flate"
)

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
// compressing them costs the compressor microseconds per KiB for
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

// syncMarker ends a flush of the compressor; RFC 7692 has the sender strip
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

// getDeflater returns a compressor of level that starts from history, the
// end of what the stream sent compressed before (nil: from scratch).
func getDeflater(level int, history []byte) *deflater {
	d, ok := deflaters[level-flate.HuffmanOnly].Get().(*deflater)
	if !ok {
		d = new(deflater)
		d.w, _ = flate.NewWriter(nil, level) // the level was checked by the Handler
	}
	// ResetDict, never Reset: Reset starts again from the dictionary
	// last given, which was another stream's.
	d.w.ResetDict(&d.sink, history)
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
	d := getDeflater(cfg.level, s.deflate.history)
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
		err = fmt.Errorf("the compressor's flush did not end with 00 00 ff ff")
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
	s.deflate.remember(p)
	s.deflate.bytesOut.Add(int64(len(p)))
	s.deflate.wireOut.Add(wire)
	s.deflate.messagesOut.Add(1)
	return true, nil
}

// remember adds p, just sent compressed, to the history, which keeps its
// last cfg.history bytes. The peer's decompressor holds the same bytes at
// the end of its window, so the next message may refer to them. The
// history is allocated once, at its full size, with the first message.
func (d *streamDeflate) remember(p []byte) {
	size := d.cfg.history
	if size == 0 {
		return
	}
	if d.history == nil {
		d.history = make([]byte, 0, size)
	}
	h := d.history
	if len(p) >= size {
		d.history = append(h[:0], p[len(p)-size:]...)
		return
	}
	if over := len(h) + len(p) - size; over > 0 {
		h = h[:copy(h, h[over:])]
	}
	d.history = append(h, p...)
}
