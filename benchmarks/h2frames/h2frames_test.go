package h2frames

import (
	"fmt"
	"testing"

	"github.com/mqttws/mqttws/interop/h2ws"
)

func TestMain(m *testing.M) {
	h2ws.ReexecWithXConnect()
	m.Run()
}

// BenchmarkWrite: the server writes one frame per operation.
func BenchmarkWrite(b *testing.B) {
	for _, size := range Sizes {
		for _, streams := range []int{1, 100} {
			for _, proto := range Protocols {
				b.Run(fmt.Sprintf("size=%d/streams=%d/proto=%s", size, streams, proto), Write(proto, streams, size))
			}
		}
	}
}

// BenchmarkRead: the server reads one frame per operation.
func BenchmarkRead(b *testing.B) {
	for _, size := range Sizes {
		for _, streams := range []int{1, 100} {
			for _, proto := range Protocols {
				b.Run(fmt.Sprintf("size=%d/streams=%d/proto=%s", size, streams, proto), Read(proto, streams, size))
			}
		}
	}
}

// TestHarnessCarriesFrames checks the harness itself on both protocols (a
// few operations, no timing).
func TestHarnessCarriesFrames(t *testing.T) {
	for _, proto := range Protocols {
		for _, streams := range []int{1, 3} {
			if r := testing.Benchmark(Write(proto, streams, 1000)); r.N == 0 {
				t.Fatalf("%s write with %d streams failed", proto, streams)
			}
			if r := testing.Benchmark(Read(proto, streams, 1000)); r.N == 0 {
				t.Fatalf("%s read with %d streams failed", proto, streams)
			}
		}
	}
}
