package compression

import (
	"bytes"
	stdflate "compress/flate"
	"io"
	"runtime"
	"testing"

	kpflate "github.com/klauspost/compress/flate"
)

// Flate names a DEFLATE implementation.
type Flate string

// The implementations set side by side.
const (
	Std       Flate = "compress/flate"
	Klauspost Flate = "klauspost/compress/flate"
)

type compressor interface {
	io.Writer
	Flush() error
	Reset(io.Writer)
}

type decompressor interface {
	io.Reader
	Reset(r io.Reader, dict []byte) error
}

func newCompressor(f Flate) compressor {
	if f == Klauspost {
		w, _ := kpflate.NewWriter(io.Discard, kpflate.BestSpeed)
		return w
	}
	w, _ := stdflate.NewWriter(io.Discard, stdflate.BestSpeed)
	return w
}

func newDecompressor(f Flate, r io.Reader) decompressor {
	if f == Klauspost {
		return kpflate.NewReader(r).(decompressor)
	}
	return stdflate.NewReader(r).(decompressor)
}

// Deflate measures compressing p as mqttws does for each message (reset, no
// context takeover; write; sync flush) at level 1, and returns the result
// and the compressed size.
func Deflate(f Flate, p []byte) (testing.BenchmarkResult, int) {
	w := newCompressor(f)
	var out bytes.Buffer
	r := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(p)))
		for b.Loop() {
			out.Reset()
			w.Reset(&out)
			_, _ = w.Write(p)
			_ = w.Flush()
		}
	})
	return r, out.Len()
}

// Inflate measures decompressing p (compressed by compress/flate at level
// 1, as a client sends it) with a decompressor reset for each message.
func Inflate(f Flate, p []byte) testing.BenchmarkResult {
	var z bytes.Buffer
	w, _ := stdflate.NewWriter(&z, stdflate.BestSpeed)
	_, _ = w.Write(p)
	_ = w.Flush()
	z.Write([]byte{1, 0, 0, 0xff, 0xff})
	src := bytes.NewReader(z.Bytes())
	d := newDecompressor(f, src)
	buf := make([]byte, len(p))
	return testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(p)))
		for b.Loop() {
			src.Reset(z.Bytes())
			_ = d.Reset(src, nil)
			_, _ = io.ReadFull(d, buf)
		}
	})
}

// WriterSize returns the heap a new level-1 compressor takes.
func WriterSize(f Flate) uint64 {
	return allocated(func() any { return newCompressor(f) })
}

// ReaderSize returns the heap a new decompressor takes.
func ReaderSize(f Flate) uint64 {
	return allocated(func() any { return newDecompressor(f, bytes.NewReader(nil)) })
}

func allocated(f func() any) uint64 {
	var m0, m1 = new(memStats), new(memStats)
	m0.read()
	v := f()
	m1.read()
	runtime.KeepAlive(v)
	return m1.TotalAlloc - m0.TotalAlloc
}
