package mqttws

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"testing"
)

// scriptedReader returns its chunks one per Read and records the size of
// the slice each Read got, so a test sees which buffer a blocking read
// would have held.
type scriptedReader struct {
	chunks [][]byte
	sizes  []int
}

func (r *scriptedReader) Read(p []byte) (int, error) {
	r.sizes = append(r.sizes, len(p))
	if len(r.chunks) == 0 {
		return 0, io.EOF // where a real client would stall
	}
	n := copy(p, r.chunks[0])
	r.chunks = r.chunks[1:]
	return n, nil
}

// TestStallInsidePayloadHoldsNoPooledBuffer: a client that stops in the
// middle of a frame's payload waits on the inline array, as one that stops
// between frames does (a pooled buffer is only taken while data streams).
func TestStallInsidePayloadHoldsNoPooledBuffer(t *testing.T) {
	cases := []struct {
		name   string
		chunks [][]byte
	}{
		{
			name:   "AfterAFewBytes",
			chunks: [][]byte{bytes.Repeat([]byte{1}, 10)},
		},
		{
			name:   "AfterAFullPooledBuffer",
			chunks: [][]byte{bytes.Repeat([]byte{1}, idleReadSize), bytes.Repeat([]byte{2}, 1000)},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pool := &bufferPool{size: 4096}
			src := &scriptedReader{chunks: tc.chunks}
			var b readBuffer
			b.init(src, pool, &traffic{})
			p := make([]byte, 512) // under a pooled buffer's size: reads go through the buffer
			for {
				if _, err := b.read(p); err != nil {
					break
				}
			}
			last := src.sizes[len(src.sizes)-1]
			if last > idleReadSize {
				t.Fatalf("the read that would block got a %d-byte buffer (reads: %v), want the %d-byte inline array", last, src.sizes, idleReadSize)
			}
			if b.pooled != nil {
				t.Fatal("a pooled buffer is held after the stall")
			}
		})
	}
}

// errStall is what scriptedStallReader returns where a real client stalls:
// a read deadline passing (the gateway's relay reads with one while it
// lingers before it parks).
var errStall = errors.New("stall")

// TestStallInsideHeaderHoldsNoPooledBuffer: a client whose read filled the
// inline array, and that stops within the next frame's header, keeps that
// header's first bytes in the inline array once the read fails, not in a
// pooled buffer; the frame reads on, byte-exact, when the rest comes.
func TestStallInsideHeaderHoldsNoPooledBuffer(t *testing.T) {
	for _, cut := range []int{1, 5, idleReadSize - 1} {
		t.Run(strconv.Itoa(cut), func(t *testing.T) {
			// idleReadSize bytes: cut bytes of the next header after
			// idleReadSize-cut bytes already taken.
			first := bytes.Repeat([]byte{7}, idleReadSize)
			for i := range cut {
				first[idleReadSize-cut+i] = byte(100 + i)
			}
			rest := []byte{200, 201, 202, 203, 204, 205, 206, 207, 208, 209, 210, 211, 212, 213}
			src := &stallingReader{chunks: [][]byte{first}}
			var b readBuffer
			b.init(src, &bufferPool{size: 4096}, &traffic{})
			if _, err := b.peek(1); err != nil {
				t.Fatal(err)
			}
			b.discard(idleReadSize - cut)
			if _, err := b.peek(cut + 2); !errors.Is(err, errStall) {
				t.Fatalf("peek past the stall: %v, want the stall", err)
			}
			if b.pooled != nil {
				t.Fatalf("a pooled buffer is held after a stall with %d bytes of a header buffered", cut)
			}
			src.chunks = [][]byte{rest}
			got, err := b.peek(cut + 2)
			if err != nil {
				t.Fatal(err)
			}
			want := append(bytes.Clone(first[idleReadSize-cut:]), rest[:2]...)
			if !bytes.Equal(got, want) {
				t.Fatalf("after the stall: % x, want % x", got, want)
			}
		})
	}
}

// stallingReader returns its chunks one per Read, then errStall.
type stallingReader struct{ chunks [][]byte }

func (r *stallingReader) Read(p []byte) (int, error) {
	if len(r.chunks) == 0 {
		return 0, errStall
	}
	n := copy(p, r.chunks[0])
	r.chunks = r.chunks[1:]
	return n, nil
}
