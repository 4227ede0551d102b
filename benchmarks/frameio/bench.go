package frameio

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"testing"
)

// Sizes are the payload sizes measured, one frame per operation.
var Sizes = []int{16, 128, 1 << 10, 16 << 10, 64 << 10, 1 << 20}

// Read returns a benchmark of srv reading and unmasking frames of size
// payload bytes, one frame per operation (io.ReadFull of size bytes), while
// the client writes pre-masked frames as fast as the connection takes them.
func Read(srv Server, size int) func(*testing.B) {
	return func(b *testing.B) {
		p, err := connect(srv)
		if err != nil {
			fatal(b, err)
		}
		defer p.close()
		want := payload(size)
		chunk := clientChunk(want, srv.Framed)
		go writeForever(p.client, chunk)

		buf := make([]byte, size)
		b.SetBytes(int64(size))
		b.ReportAllocs()
		r0, _, ok := syscallCounts()
		c0, cok := cpuTime()
		for b.Loop() {
			if _, err := io.ReadFull(p.server, buf); err != nil {
				fatal(b, fmt.Errorf("%s: read: %w", srv.Name, err))
			}
		}
		if c1, _ := cpuTime(); cok {
			b.ReportMetric(float64(c1-c0)/float64(b.N), "cpu-ns/op")
		}
		if r1, _, _ := syscallCounts(); ok {
			b.ReportMetric(float64(r1-r0)/float64(b.N), "reads/op")
		}
		if !bytes.Equal(buf, want) {
			fatal(b, fmt.Errorf("%s: the last payload read differs from the one sent", srv.Name))
		}
	}
}

// Write returns a benchmark of srv writing payloads of size bytes, one
// Write (one frame, for framed servers) per operation, while the client
// reads and drops what comes.
func Write(srv Server, size int) func(*testing.B) {
	return func(b *testing.B) {
		p, err := connect(srv)
		if err != nil {
			fatal(b, err)
		}
		defer p.close()
		go drain(p.client)

		data := payload(size)
		b.SetBytes(int64(size))
		b.ReportAllocs()
		_, w0, ok := syscallCounts()
		c0, cok := cpuTime()
		for b.Loop() {
			if _, err := p.server.Write(data); err != nil {
				fatal(b, fmt.Errorf("%s: write: %w", srv.Name, err))
			}
		}
		if c1, _ := cpuTime(); cok {
			b.ReportMetric(float64(c1-c0)/float64(b.N), "cpu-ns/op")
		}
		if _, w1, _ := syscallCounts(); ok {
			b.ReportMetric(float64(w1-w0)/float64(b.N), "writes/op")
		}
	}
}

var (
	errMu   sync.Mutex
	lastErr error
)

// fatal records err for Run, then fails the benchmark.
func fatal(b *testing.B, err error) {
	errMu.Lock()
	lastErr = err
	errMu.Unlock()
	b.Fatal(err)
}

// Run runs one benchmark with testing.Benchmark (its duration comes from
// the test.benchtime flag, once testing.Init has registered it) and returns
// the reason when it failed.
func Run(f func(*testing.B)) (testing.BenchmarkResult, error) {
	errMu.Lock()
	lastErr = nil
	errMu.Unlock()
	r := testing.Benchmark(f)
	if r.N == 0 {
		errMu.Lock()
		defer errMu.Unlock()
		if lastErr == nil {
			return r, fmt.Errorf("frameio: benchmark failed")
		}
		return r, lastErr
	}
	return r, nil
}
