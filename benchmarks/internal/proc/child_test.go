package proc

import "testing"

// TestBreakdownPartition checks that the parts add up exactly to the
// runtime's total less the released heap, and agree with runtime.MemStats,
// read a moment apart: up to slack, for the test's own goroutines.
func TestBreakdownPartition(t *testing.T) {
	const slack = 128 << 10
	s := stats()
	total, ok := s.Classes[MemoryClasses+"total:bytes"]
	if !ok {
		t.Fatal("no total in", s.Classes)
	}
	released := s.Classes[MemoryClasses+"heap/released:bytes"]
	b := s.Breakdown()
	if got, want := b.Go(), int64(total-released); got != want {
		t.Errorf("parts sum to %d, want total %d - released %d = %d", got, total, released, want)
	}
	near := func(what string, got int64, want uint64) {
		if d := got - int64(want); d < -slack || d > slack {
			t.Errorf("%s: %d from the memory classes, %d from MemStats", what, got, want)
		}
	}
	near("Sys", int64(total), s.Sys)
	near("HeapInuse", b.HeapLive+b.HeapUnused, s.HeapInuse)
	near("HeapAlloc", b.HeapLive, s.HeapAlloc)
	near("StackInuse", b.Stacks, s.StackInuse)
	near("MSpanInuse", int64(s.Classes[MemoryClasses+"metadata/mspan/inuse:bytes"]), s.MSpanInuse)
	if s.RSS == 0 || s.RSSAnon+s.RSSFile > s.RSS {
		t.Errorf("RSS %d, anon %d, file %d", s.RSS, s.RSSAnon, s.RSSFile)
	}
}
