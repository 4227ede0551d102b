package mqttws

import (
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// storedMessage returns p as a sender's deflate makes a message of bytes
// that do not shrink: one stored block, then the byte that starts the empty
// stored block of a flush (whose 00 00 ff ff RFC 7692 strips).
func storedMessage(p []byte) []byte { return append(storedBlock(p, false), 0) }

// storedBlock returns p as one stored deflate block.
func storedBlock(p []byte, final bool) []byte {
	b := []byte{0, byte(len(p)), byte(len(p) >> 8), ^byte(len(p)), ^byte(len(p) >> 8)}
	if final {
		b[0] = 1
	}
	return append(b, p...)
}

// compressedMessageFrames encodes the compressed message z as client
// frames with RSV1 on the first, cut at the given offsets of z.
func compressedMessageFrames(z []byte, cuts ...int) []byte {
	var out bytes.Buffer
	start := 0
	for i, end := range append(cuts, len(z)) {
		h := ws.Header{Fin: end == len(z), OpCode: ws.OpContinuation, Masked: true, Mask: [4]byte{9, 8, 7, 6}, Length: int64(end - start)}
		if i == 0 {
			h.OpCode, h.Rsv = ws.OpBinary, rsvCompressed
		}
		payload := bytes.Clone(z[start:end])
		ws.Cipher(payload, h.Mask, 0)
		_ = ws.WriteHeader(&out, h)
		out.Write(payload)
		start = end
	}
	return out.Bytes()
}

// readCompressedMessages reads everything a stream with compression on
// makes of wire, and the error it ends with, and whether a message went to
// a decompressor.
func readCompressedMessages(t *testing.T, wire []byte, limit int64, readSize int) (out []byte, err error, decompressor bool) {
	t.Helper()
	conn := &fuzzConn{in: bytes.NewReader(wire)}
	cfg := (&CompressionOptions{MaxInflatedSize: limit}).config(0)
	s := newStream(conn, conn, streamConfig{
		pool:     &bufferPool{size: DefaultReadBufferSize},
		deflate:  &cfg,
		settings: &streamSettings{closeTimeout: time.Second},
	})
	buf := make([]byte, readSize)
	for {
		n, rerr := s.Read(buf)
		out = append(out, buf[:n]...)
		if rerr != nil {
			return out, rerr, s.deflate.in.decompressed > 0
		}
	}
}

// TestStoredMessagesSkipTheDecompressor checks the stored-block path of
// compressed reads: messages that are one stored block (random bytes
// compressed by compress/flate, as browsers and ws send them) come out
// byte for byte without a decompressor; anything else that looks close
// (two blocks, a broken NLEN, a fragmented message, a length over the
// limit) goes to the decompressor, which judges it as before.
func TestStoredMessagesSkipTheDecompressor(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	r1000 := random(1000)
	var byFlate bytes.Buffer
	w, _ := flate.NewWriter(&byFlate, flate.BestSpeed)
	_, _ = w.Write(r1000)
	_ = w.Flush()
	fromFlate := bytes.TrimSuffix(byFlate.Bytes(), syncMarker)
	twoBlocks := append(storedBlock(r1000[:400], false), storedMessage(r1000[400:])...)
	broken := storedMessage(r1000)
	broken[3] ^= 1
	r60k := random(60 << 10)

	cases := []struct {
		name             string
		wire             []byte
		limit            int64
		want             []byte
		wantCode         CloseCode // 0: the stream reaches io.EOF
		wantDecompressor bool
	}{
		{name: "RandomBytesFromCompressFlate", wire: compressedMessageFrames(fromFlate), want: r1000},
		{name: "FinalStoredBlock", wire: compressedMessageFrames(storedBlock(r1000, true)), want: r1000},
		{name: "FinalBlockThenAnything", wire: compressedMessageFrames(append(storedBlock(r1000, true), 0xff, 0xff)), want: r1000, wantDecompressor: true},
		{name: "EmptyStoredBlock", wire: compressedMessageFrames(storedMessage(nil)), want: nil},
		{name: "FinalEmptyBlockAfter", wire: compressedMessageFrames(append(storedBlock(r1000, false), 1)), want: r1000},
		{name: "OverAReadBufferGoesToTheDecompressor", wire: compressedMessageFrames(storedMessage(r60k)), want: r60k, wantDecompressor: true},
		{name: "SeveralMessages", wire: append(compressedMessageFrames(storedMessage(r1000[:10])), compressedMessageFrames(storedMessage(r1000[10:]))...), want: r1000},
		{name: "TwoBlocksGoToTheDecompressor", wire: compressedMessageFrames(twoBlocks), want: r1000, wantDecompressor: true},
		{name: "FragmentedGoesToTheDecompressor", wire: compressedMessageFrames(storedMessage(r1000), 3, 500), want: r1000, wantDecompressor: true},
		{name: "BrokenLengthIsInvalidData", wire: compressedMessageFrames(broken), wantCode: CloseInvalidPayload, wantDecompressor: true},
		{name: "NoEmptyBlockAfterIsInvalidData", wire: compressedMessageFrames(storedBlock(r1000, false)), wantCode: CloseInvalidPayload, wantDecompressor: true},
		{name: "HuffmanBlockAfterGoesToTheDecompressor", wire: compressedMessageFrames(append(storedBlock(r1000, false), 0x02)), wantCode: CloseInvalidPayload, wantDecompressor: true},
		{name: "OverTheLimitIsTooBig", wire: compressedMessageFrames(storedMessage(r1000)), limit: 999, want: r1000[:999], wantCode: CloseMessageTooBig, wantDecompressor: true},
		{name: "AtTheLimit", wire: compressedMessageFrames(storedMessage(r1000)), limit: 1000, want: r1000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, readSize := range []int{1, 7, 100, 64 << 10} {
				out, err, decompressor := readCompressedMessages(t, tc.wire, tc.limit, readSize)
				var ce *CloseError
				switch {
				case tc.wantCode == 0 && err != io.EOF:
					t.Fatalf("read size %d: ended with %v, want io.EOF", readSize, err)
				case tc.wantCode != 0 && (!errors.As(err, &ce) || ce.Code != tc.wantCode):
					t.Fatalf("read size %d: ended with %v, want close code %d", readSize, err, tc.wantCode)
				}
				if tc.wantCode != CloseInvalidPayload && !bytes.Equal(out, tc.want) {
					t.Fatalf("read size %d: %d bytes differ from the %d sent", readSize, len(out), len(tc.want))
				}
				if decompressor != tc.wantDecompressor {
					t.Fatalf("read size %d: decompressor taken %v, want %v", readSize, decompressor, tc.wantDecompressor)
				}
			}
		})
	}
}

// FuzzStoredPathAgreesWithDecompressor sends one compressed message, in
// one frame or cut in two, and checks what the stream reads against
// compress/flate's reading of the same bytes: equal bytes when that
// succeeds within the limit, a close with 1007 or 1009 when it fails.
func FuzzStoredPathAgreesWithDecompressor(f *testing.F) {
	f.Add(storedMessage([]byte("hello, world")), uint16(0), uint16(5))
	f.Add(storedBlock([]byte("hello, world"), false), uint16(0), uint16(5))
	f.Add(storedBlock(nil, true), uint16(0), uint16(1))
	f.Add(append(storedBlock([]byte("ab"), false), storedBlock([]byte("cd"), true)...), uint16(3), uint16(2))
	f.Add([]byte{0xca, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}, uint16(0), uint16(4))
	const limit = 1 << 10
	f.Fuzz(func(t *testing.T, z []byte, cut, readSize uint16) {
		var cuts []int
		if c := int(cut); c > 0 && c < len(z) {
			cuts = []int{c}
		}
		out, err, _ := readCompressedMessages(t, compressedMessageFrames(z, cuts...), limit, 1+int(readSize)%2048)
		tail := inflateTail[:]
		if len(z) == 0 {
			tail = tail[len(syncMarker):] // an empty payload is an empty message, as zlib reads it
		}
		ref := flate.NewReader(io.MultiReader(bytes.NewReader(z), bytes.NewReader(tail)))
		want, refErr := io.ReadAll(io.LimitReader(ref, limit+1))
		var ce *CloseError
		switch {
		case refErr == nil && len(want) <= limit:
			if err != io.EOF || !bytes.Equal(out, want) {
				t.Fatalf("read %d bytes and %v; compress/flate reads %d bytes", len(out), err, len(want))
			}
		case !errors.As(err, &ce) || (ce.Code != CloseInvalidPayload && ce.Code != CloseMessageTooBig):
			t.Fatalf("compress/flate: %d bytes and %v; the stream ended with %v", len(want), refErr, err)
		}
	})
}
