package frameio

import (
	"flag"
	"fmt"
	"testing"
)

// BenchmarkRead measures server reads of client frames, for every server
// and payload size: go test -run '^$' -bench Read ./frameio
func BenchmarkRead(b *testing.B) {
	for _, size := range Sizes {
		for _, srv := range Servers() {
			b.Run(fmt.Sprintf("size=%d/impl=%s", size, srv.Name), Read(srv, size))
		}
	}
}

// BenchmarkWrite measures server writes of frames, for every server and
// payload size: go test -run '^$' -bench Write ./frameio
func BenchmarkWrite(b *testing.B) {
	for _, size := range Sizes {
		for _, srv := range Servers() {
			b.Run(fmt.Sprintf("size=%d/impl=%s", size, srv.Name), Write(srv, size))
		}
	}
}

// TestEveryServerCarriesBytes checks the harness itself: each server reads
// and writes through a real connection (a few operations, no timing).
func TestEveryServerCarriesBytes(t *testing.T) {
	bt := flag.Lookup("test.benchtime").Value
	old := bt.String()
	if err := bt.Set("20x"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bt.Set(old) })
	for _, srv := range Servers() {
		for _, size := range []int{16, 70000} {
			t.Run(fmt.Sprintf("%s/%d", srv.Name, size), func(t *testing.T) {
				if r := testing.Benchmark(Read(srv, size)); r.N == 0 {
					t.Fatal("read benchmark failed")
				}
				if r := testing.Benchmark(Write(srv, size)); r.N == 0 {
					t.Fatal("write benchmark failed")
				}
			})
		}
	}
}
