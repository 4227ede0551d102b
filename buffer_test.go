package mqttws

import (
	"bytes"
	"io"
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
