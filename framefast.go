package mqttws

import (
	"encoding/binary"
	"math/bits"

	"github.com/gobwas/ws"
)

// The fast path of frame reading: MQTT over WebSocket is mostly small
// binary frames arriving back to back, many per system call. For those,
// parsing the header in place and unmasking with word-sized XORs costs a
// fraction of the general path (ws.ReadHeaderBuffer through an io.Reader,
// then ws.CheckHeader); see the frameio benchmarks. Everything else goes
// through frameReader.next, which remains the reference: the fast path only
// takes frames that next would accept, and leaves the reader in the state
// next would (TestFastHeaderAgreesWithNext, FuzzFastHeader).

// Header bits as they appear in the first two bytes of a frame.
const (
	bitFin    = 0x80
	bitMasked = 0x80
)

// nextBuffered takes the header of the next frame when it is fully
// buffered and of the common kind: a data frame with no RSV bit set, binary
// outside a fragmented message or a continuation inside one, masked, with a
// 7-bit or 16-bit length within the frame size limit. It reports false,
// consuming nothing, for any other frame: next then reads it and applies
// every rule, protocol errors included. A frame taken is counted in
// fr.frames.
func (fr *frameReader) nextBuffered() bool {
	b := fr.buf.buf[fr.buf.r:fr.buf.w]
	if len(b) < ws.MinHeaderSize+4 {
		return false
	}
	b0, b1 := b[0], b[1]
	// RSV1-3 clear and the opcode the message state expects.
	want := byte(ws.OpBinary)
	if fr.fragmented {
		want = byte(ws.OpContinuation)
	}
	if b0&^bitFin != want || b1&bitMasked == 0 {
		return false
	}
	length := int64(b1 &^ bitMasked)
	size := ws.MinHeaderSize + 4
	switch length {
	case 126:
		size += 2
		if len(b) < size {
			return false
		}
		length = int64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		return false // rare, and its most significant bit needs checking
	}
	if fr.maxFrameSize > 0 && length > fr.maxFrameSize {
		return false
	}
	copy(fr.mask[:], b[size-4:size])
	fr.buf.discard(size)
	if want == byte(ws.OpBinary) {
		fr.compressed = false
	}
	fr.fragmented = b0&bitFin == 0
	fr.remaining = length
	fr.offset = 0
	fr.frames++
	return true
}

// readBufferedFrames copies into p the payload of the data frames whose
// bytes are buffered: the rest of the current one, then whole frames whose
// headers nextBuffered takes, unmasked, as far as p has room and the buffer
// has bytes. It stops at any other frame, which the general path then reads,
// and never reads from the connection.
func (fr *frameReader) readBufferedFrames(p []byte) int {
	n := 0
	for fr.remaining > 0 || fr.nextBuffered() {
		dst := p[n:]
		if int64(len(dst)) > fr.remaining {
			dst = dst[:fr.remaining]
		}
		m := copyUnmask(dst, fr.buf.buf[fr.buf.r:fr.buf.w], fr.mask, fr.offset)
		fr.buf.r += m
		fr.offset += m
		fr.remaining -= int64(m)
		n += m
		if n == len(p) || fr.buf.r == fr.buf.w {
			break
		}
	}
	if fr.buf.r == fr.buf.w {
		fr.buf.release()
	}
	return n
}

// cipherMinSize is the payload size from which ws.Cipher's vector code is
// as fast as unmaskWords at a frame's start, and faster beyond (about 10 ns
// against 5 at 16 bytes, even at 64, 11 against 17 at 128: BenchmarkUnmask).
const cipherMinSize = 64

// unmask XORs p with mask, p starting offset bytes into the payload (see
// ws.Cipher, which it calls for larger slices).
func unmask(p []byte, mask [4]byte, offset int) {
	if len(p) >= cipherMinSize {
		ws.Cipher(p, mask, offset)
		return
	}
	unmaskWords(p, mask, offset)
}

// unmaskWords is unmask with 8-byte XORs, whatever the size.
func unmaskWords(p []byte, mask [4]byte, offset int) {
	wordsCopyUnmask(p, p, mask, offset) // in place: each word is read before it is written
}

// copyUnmask copies src into dst, unmasked, dst starting offset bytes into
// the payload, and returns the count copied, as copy would: one pass over
// the bytes instead of copy and then unmask.
func copyUnmask(dst, src []byte, mask [4]byte, offset int) int {
	n := min(len(dst), len(src))
	if n >= copyUnmaskMax {
		copy(dst, src[:n])
		unmask(dst[:n], mask, offset)
		return n
	}
	wordsCopyUnmask(dst[:n], src[:n], mask, offset)
	return n
}

// wordsCopyUnmask is copyUnmask's word loop, for dst and src of one length.
func wordsCopyUnmask(dst, src []byte, mask [4]byte, offset int) {
	// Byte k of m is mask[(offset+k)%4].
	m := bits.RotateLeft32(binary.LittleEndian.Uint32(mask[:]), -8*(offset&3))
	m64 := uint64(m) | uint64(m)<<32
	for len(src) >= 32 && len(dst) >= 32 {
		binary.LittleEndian.PutUint64(dst[0:8], binary.LittleEndian.Uint64(src[0:8])^m64)
		binary.LittleEndian.PutUint64(dst[8:16], binary.LittleEndian.Uint64(src[8:16])^m64)
		binary.LittleEndian.PutUint64(dst[16:24], binary.LittleEndian.Uint64(src[16:24])^m64)
		binary.LittleEndian.PutUint64(dst[24:32], binary.LittleEndian.Uint64(src[24:32])^m64)
		dst, src = dst[32:], src[32:]
	}
	for len(src) >= 8 && len(dst) >= 8 {
		binary.LittleEndian.PutUint64(dst, binary.LittleEndian.Uint64(src)^m64)
		dst, src = dst[8:], src[8:]
	}
	for i := range min(len(src), len(dst)) {
		dst[i] = src[i] ^ byte(m64>>(8*i))
	}
}

// copyUnmaskMax is the size from which copy and then ws.Cipher beat
// copyUnmask's word loop (BenchmarkCopyUnmask) at a payload's start, the
// common case: 128 bytes 10–13 against 14 ns, 256 bytes 19–21 against
// 16–18 (one byte in, the word loop wins up to 512).
const copyUnmaskMax = 256
