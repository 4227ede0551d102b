package mqttws

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// readerState is what a frame header leaves behind in a frameReader.
type readerState struct {
	consumed   int // bytes of the input taken
	fragmented bool
	compressed bool
	remaining  int64
	offset     int
	mask       [4]byte
}

// bufferedReader returns a frameReader holding data in its buffer, as if
// one read had brought it, with nothing more to come.
func bufferedReader(data []byte, fragmented, compressed, deflate bool, maxFrame int64) *frameReader {
	fr := &frameReader{}
	fr.init(bytes.NewReader(nil), &bufferPool{size: minReadBufferSize}, max(maxFrame, 0), &traffic{})
	fr.buf.buf = slices.Clone(data)
	fr.buf.w = len(data)
	fr.fragmented, fr.compressed, fr.deflate = fragmented, compressed, deflate
	return fr
}

func stateOf(fr *frameReader, input int) readerState {
	return readerState{
		consumed:   input - fr.buf.buffered(),
		fragmented: fr.fragmented,
		compressed: fr.compressed,
		remaining:  fr.remaining,
		offset:     fr.offset,
		mask:       fr.mask,
	}
}

// checkFastHeader feeds data to nextBuffered and to next, on readers in
// the same state: when nextBuffered takes the header, next must accept the
// same data frame and leave the reader in the same state; when it does
// not, it must have consumed nothing.
func checkFastHeader(t *testing.T, data []byte, fragmented, compressed, deflate bool, maxFrame int64) {
	t.Helper()
	fast := bufferedReader(data, fragmented, compressed, deflate, maxFrame)
	before := stateOf(fast, len(data))
	if !fast.nextBuffered() {
		if got := stateOf(fast, len(data)); got != before {
			t.Fatalf("nextBuffered declined % x but changed the reader: %+v, was %+v", data, got, before)
		}
		return
	}
	slow := bufferedReader(data, fragmented, compressed, deflate, maxFrame)
	h, _, err := slow.next()
	if err != nil {
		t.Fatalf("nextBuffered took % x, next refuses it: %v", data, err)
	}
	if h.OpCode.IsControl() {
		t.Fatalf("nextBuffered took a control frame: % x", data)
	}
	if got, want := stateOf(fast, len(data)), stateOf(slow, len(data)); got != want {
		t.Fatalf("after % x: nextBuffered left %+v, next %+v", data, got, want)
	}
	if fast.frames != 1 || slow.frames != 0 {
		t.Fatalf("nextBuffered counted %d frames, next %d; want 1 and 0 (Stream.nextFrame counts those)", fast.frames, slow.frames)
	}
}

// TestFastHeaderAgreesWithNext runs checkFastHeader over headers of every
// first byte, length form and mask bit, in every reader state.
func TestFastHeaderAgreesWithNext(t *testing.T) {
	mask := []byte{1, 2, 3, 4}
	var headers [][]byte
	for b0 := range 256 {
		for _, lengthBytes := range [][]byte{
			{0}, {5}, {125}, {126, 0, 126}, {126, 0xff, 0xff}, {126, 0, 5},
			{127, 0, 0, 0, 0, 0, 1, 0, 0}, {127, 0x80, 0, 0, 0, 0, 0, 0, 1},
		} {
			for _, masked := range []bool{true, false} {
				h := []byte{byte(b0), lengthBytes[0]}
				h = append(h, lengthBytes[1:]...)
				if masked {
					h[1] |= 0x80
					h = append(h, mask...)
				}
				headers = append(headers, append(h, "payload"...))
			}
		}
	}
	taken := 0
	for _, h := range headers {
		for _, st := range [][3]bool{{false, false, false}, {true, false, false}, {false, false, true}, {true, true, true}} {
			for _, maxFrame := range []int64{0, 5, 125, 65535} {
				// Whole, and cut short anywhere in the header.
				for end := 2; end <= len(h); end++ {
					checkFastHeader(t, h[:end], st[0], st[1], st[2], maxFrame)
				}
				fr := bufferedReader(h, st[0], st[1], st[2], maxFrame)
				if fr.nextBuffered() {
					taken++
				}
			}
		}
	}
	// The common frames must take the fast path, or it is no use.
	if taken == 0 {
		t.Fatal("nextBuffered took no header at all")
	}
	for _, tc := range []struct {
		data       []byte
		fragmented bool
	}{
		{data: []byte{0x82, 0x85, 1, 2, 3, 4}},
		{data: []byte{0x02, 0xfe, 0x01, 0x00, 1, 2, 3, 4}},
		{data: []byte{0x80, 0x80, 1, 2, 3, 4}, fragmented: true},
		{data: []byte{0x00, 0x81, 1, 2, 3, 4}, fragmented: true},
	} {
		if !bufferedReader(tc.data, tc.fragmented, false, false, 0).nextBuffered() {
			t.Errorf("nextBuffered declined % x (fragmented %v)", tc.data, tc.fragmented)
		}
	}
}

// FuzzFastHeader is TestFastHeaderAgreesWithNext on arbitrary bytes.
func FuzzFastHeader(f *testing.F) {
	f.Add([]byte{0x82, 0x85, 1, 2, 3, 4, 5}, false, false, false, int64(0))
	f.Add([]byte{0x80, 0xfe, 0, 200, 1, 2, 3, 4}, true, true, true, int64(100))
	f.Fuzz(func(t *testing.T, data []byte, fragmented, compressed, deflate bool, maxFrame int64) {
		if len(data) < 2 {
			return
		}
		checkFastHeader(t, data, fragmented, compressed, deflate, maxFrame)
	})
}

// chunkReader returns data at most n bytes per read, so that frames
// straddle the reads anywhere.
type chunkReader struct {
	data []byte
	n    int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	m := copy(p[:min(len(p), c.n)], c.data)
	c.data = c.data[m:]
	return m, nil
}

// slowRead reads data the way Stream.Read did before the fast path, with
// next and readPayload only: the payload bytes of data frames, the count of
// frames, and the error that ends reading (a *CloseError for a violation).
func slowRead(data []byte, maxFrame int64) ([]byte, int64, error) {
	var fr frameReader
	fr.init(bytes.NewReader(data), &bufferPool{size: minReadBufferSize}, maxFrame, &traffic{})
	var out []byte
	var frames int64
	buf := make([]byte, 1024)
	for {
		if fr.remaining > 0 {
			n, err := fr.readPayload(buf)
			out = append(out, buf[:n]...)
			if err != nil {
				return out, frames, err
			}
			continue
		}
		h, payload, err := fr.next()
		if err != nil {
			return out, frames, err
		}
		frames++
		if h.OpCode == ws.OpClose {
			if _, _, err := parseCloseBody(payload); err != nil {
				return out, frames, err
			}
			return out, frames, io.EOF
		}
	}
}

// FuzzFastPathAgreesWithSlowPath feeds the same client bytes to a Stream
// (fast path and all, from a source that cuts them into chunks of any
// size, read with any buffer size) and to slowRead: both must yield the
// same payload bytes, count the same frames, and end the same way.
func FuzzFastPathAgreesWithSlowPath(f *testing.F) {
	frame := func(b0 byte, payload []byte) []byte {
		h := ws.Header{Fin: b0&0x80 != 0, OpCode: ws.OpCode(b0 & 0x0f), Length: int64(len(payload)), Masked: true, Mask: [4]byte{9, 8, 7, 6}}
		var b bytes.Buffer
		_ = ws.WriteHeader(&b, h)
		p := slices.Clone(payload)
		ws.Cipher(p, h.Mask, 0)
		b.Write(p)
		return b.Bytes()
	}
	f.Add(concat(frame(0x82, []byte("hello")), frame(0x82, nil), frame(0x88, []byte{3, 232})), uint16(3), uint16(7), int64(0))
	f.Add(concat(frame(0x02, []byte("he")), frame(0x89, []byte("p")), frame(0x80, []byte("llo")), frame(0x82, bytes.Repeat([]byte{1}, 300))), uint16(100), uint16(5), int64(0))
	f.Add(concat(frame(0x82, bytes.Repeat([]byte{2}, 70000)), frame(0x81, []byte("text"))), uint16(4000), uint16(999), int64(0))
	f.Add(concat(frame(0x82, []byte("ok")), frame(0x82, []byte("too big"))), uint16(9), uint16(1), int64(5))
	f.Fuzz(func(t *testing.T, data []byte, readSize, chunk uint16, maxFrame int64) {
		maxFrame = max(maxFrame, 0)
		want, wantFrames, wantErr := slowRead(data, maxFrame)

		conn := &fuzzConn{in: bytes.NewReader(nil)}
		s := newStream(conn, &chunkReader{data: data, n: 1 + int(chunk)%5000}, streamConfig{
			pool:         &bufferPool{size: minReadBufferSize},
			maxFrameSize: maxFrame,
			settings:     &streamSettings{closeTimeout: time.Second},
		})
		buf := make([]byte, 1+int(readSize)%4096)
		var got []byte
		var err error
		for err == nil {
			var n int
			n, err = s.Read(buf)
			got = append(got, buf[:n]...)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("stream read %d bytes, slow path %d", len(got), len(want))
		}
		if errors.Is(wantErr, io.ErrUnexpectedEOF) {
			wantErr = io.ErrUnexpectedEOF // the stream's own wrapping aside
		}
		var gce, wce *CloseError
		switch {
		case errors.As(wantErr, &wce):
			if !errors.As(err, &gce) || gce.Code != wce.Code {
				t.Fatalf("stream ended with %v, slow path with %v", err, wantErr)
			}
		case !errors.Is(err, wantErr):
			t.Fatalf("stream ended with %v, slow path with %v", err, wantErr)
		}
		if s.framesIn.Load() != wantFrames || s.bytesIn.Load() != int64(len(want)) {
			t.Fatalf("stream counted %d frames and %d bytes, slow path %d and %d", s.framesIn.Load(), s.bytesIn.Load(), wantFrames, len(want))
		}
	})
}

func concat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// TestUnmaskAgreesWithCipher checks unmask against ws.Cipher for every
// length up to past the switch to ws.Cipher and every mask offset.
func TestUnmaskAgreesWithCipher(t *testing.T) {
	mask := [4]byte{0x12, 0x34, 0x56, 0x78}
	for n := range 2*cipherMinSize + 3 {
		for offset := range 9 {
			p := make([]byte, n)
			for i := range p {
				p[i] = byte(i * 7)
			}
			want := slices.Clone(p)
			ws.Cipher(want, mask, offset)
			unmask(p, mask, offset)
			if !bytes.Equal(p, want) {
				t.Fatalf("%d bytes at offset %d: % x, want % x", n, offset, p, want)
			}
		}
	}
}

// FuzzParseHeader checks parseHeader against ws.ReadHeader.
func FuzzParseHeader(f *testing.F) {
	f.Add([]byte{0x82, 0xfe, 0x01, 0x00, 1, 2, 3, 4})
	f.Add([]byte{0x81, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 || len(data) < headerSize(data) {
			return
		}
		b := data[:headerSize(data)]
		got := parseHeader(b)
		want, err := ws.ReadHeader(bytes.NewReader(b))
		if errors.Is(err, ws.ErrHeaderLengthMSB) {
			if got.Length >= 0 {
				t.Fatalf("% x: length %d, ws.ReadHeader: %v", b, got.Length, err)
			}
			return
		}
		if err != nil || got != want {
			t.Fatalf("% x: %+v, ws.ReadHeader: %+v, %v", b, got, want, err)
		}
	})
}

// FuzzPutHeader checks putHeader against ws.WriteHeader.
func FuzzPutHeader(f *testing.F) {
	f.Add(true, byte(0), byte(2), int64(125), false, uint32(0))
	f.Add(false, byte(4), byte(8), int64(70000), true, uint32(0x01020304))
	f.Fuzz(func(t *testing.T, fin bool, rsv, op byte, length int64, masked bool, mask uint32) {
		if length < 0 {
			return
		}
		h := ws.Header{Fin: fin, Rsv: rsv & 7, OpCode: ws.OpCode(op & 0x0f), Length: length, Masked: masked}
		if masked {
			binary.BigEndian.PutUint32(h.Mask[:], mask)
		}
		var want bytes.Buffer
		if err := ws.WriteHeader(&want, h); err != nil {
			t.Fatal(err)
		}
		var b [ws.MaxHeaderSize]byte
		if got := b[:putHeader(b[:], h)]; !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("%+v: % x, ws.WriteHeader: % x", h, got, want.Bytes())
		}
	})
}

// TestWritesAroundTheCopyLimit checks the frames the two write paths send
// (a copy into a pooled buffer up to frameBufferSize, writev beyond) on a
// real TCP connection: each payload arrives whole, in one final binary
// frame, in order.
func TestWritesAroundTheCopyLimit(t *testing.T) {
	limit := frameBufferSize - ws.MaxHeaderSize
	sizes := []int{1, 125, 126, limit - 1, limit, limit + 1, 65535, 65536, 200000}
	s, client := testStream(t)
	done := make(chan error, 1)
	go func() {
		for i, size := range sizes {
			p := bytes.Repeat([]byte{byte(i + 1)}, size)
			if _, err := s.Write(p); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i, size := range sizes {
		h, err := ws.ReadHeader(client)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !h.Fin || h.OpCode != ws.OpBinary || h.Masked || h.Rsv != 0 || h.Length != int64(size) {
			t.Fatalf("frame %d: %+v, want a final binary frame of %d bytes", i, h, size)
		}
		got := make([]byte, size)
		if _, err := io.ReadFull(client, got); err != nil {
			t.Fatalf("frame %d: payload: %v", i, err)
		}
		if want := bytes.Repeat([]byte{byte(i + 1)}, size); !bytes.Equal(got, want) {
			t.Fatalf("frame %d: the payload differs from the one written", i)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := s.framesOut.Load(); got != int64(len(sizes)) {
		t.Fatalf("framesOut %d, want %d", got, len(sizes))
	}
}

// BenchmarkUnmask compares unmask's word loop with ws.Cipher on small
// payloads, which is where cipherMinSize comes from.
func BenchmarkUnmask(b *testing.B) {
	mask := [4]byte{0x12, 0x34, 0x56, 0x78}
	for _, size := range []int{16, 64, 128, 256, 512, 1024} {
		p := make([]byte, size)
		for _, offset := range []int{0, 1} {
			b.Run(fmt.Sprintf("size=%d/offset=%d/impl=words", size, offset), func(b *testing.B) {
				b.SetBytes(int64(size))
				for b.Loop() {
					unmaskWords(p, mask, offset)
				}
			})
			b.Run(fmt.Sprintf("size=%d/offset=%d/impl=cipher", size, offset), func(b *testing.B) {
				b.SetBytes(int64(size))
				for b.Loop() {
					ws.Cipher(p, mask, offset)
				}
			})
		}
	}
}

// BenchmarkCopyUnmask compares copyUnmask's single pass with copy and then
// unmask, which is where copyUnmaskMax comes from.
func BenchmarkCopyUnmask(b *testing.B) {
	mask := [4]byte{0x12, 0x34, 0x56, 0x78}
	for _, size := range []int{16, 64, 128, 256, 512, 1024} {
		src, dst := make([]byte, size), make([]byte, size)
		for _, offset := range []int{0, 1} {
			b.Run(fmt.Sprintf("size=%d/offset=%d/impl=fused", size, offset), func(b *testing.B) {
				b.SetBytes(int64(size))
				for b.Loop() {
					wordsCopyUnmask(dst, src, mask, offset)
				}
			})
			b.Run(fmt.Sprintf("size=%d/offset=%d/impl=copy+unmask", size, offset), func(b *testing.B) {
				b.SetBytes(int64(size))
				for b.Loop() {
					n := copy(dst, src)
					unmask(dst[:n], mask, offset)
				}
			})
		}
	}
}

// copyUnmask leaves in dst what copy and then ws.Cipher would, for every
// size around its word loop's steps and the switch to ws.Cipher, every
// offset, and a dst shorter or longer than src; it writes nothing past the
// count it returns.
func TestCopyUnmaskAgreesWithCipher(t *testing.T) {
	mask := [4]byte{0xa1, 0x5e, 0x07, 0xc3}
	src := make([]byte, 1100)
	for i := range src {
		src[i] = byte(i*7 + 3)
	}
	for size := range 1100 {
		if size > 80 && size%31 != 0 && size != copyUnmaskMax-1 && size != copyUnmaskMax {
			continue
		}
		for offset := range 5 {
			for _, room := range []int{size, size / 2, size + 9} {
				want := make([]byte, room+8)
				n := copy(want[:room], src[:size])
				ws.Cipher(want[:n], mask, offset)
				got := make([]byte, room+8)
				for i := range got[n:] {
					got[n+i], want[n+i] = 0xee, 0xee
				}
				if m := copyUnmask(got[:room], src[:size], mask, offset); m != min(room, size) {
					t.Fatalf("size %d room %d: copied %d", size, room, m)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("size %d offset %d room %d: differs from copy and ws.Cipher", size, offset, room)
				}
			}
		}
	}
}
