package report

import (
	"strings"
	"testing"
)

// TestMemoryBreakdownRow checks that the breakdown writes a row for a
// target with the Go process's figures, summing the stack and metadata
// metrics into one column each, and none for a target without them.
func TestMemoryBreakdownRow(t *testing.T) {
	r := &Results{}
	add := func(target, metric string, v float64) {
		r.Add(Sample{Suite: Memory, Case: "idle/100", Target: target, Metric: metric, Round: 1, Value: v})
	}
	for metric, v := range map[string]float64{
		"go_rss_KiB/conn": 5, "heap_live_KiB/conn": 3, "heap_unused_KiB/conn": 0.5, "heap_free_KiB/conn": 0,
		"stack_KiB/conn": 0.25, "os_stack_KiB/conn": 0, "mspan_KiB/conn": 0.125, "gc_meta_KiB/conn": 0.125,
		"runtime_other_KiB/conn": 1, "not_go_KiB/conn": 0, "rss_file_KiB/conn": 0,
	} {
		add("go", metric, v)
	}
	add("c", "rss_KiB/conn", 1)
	var b strings.Builder
	r.writeMemoryBreakdown(&b, []int{100}, []string{"go", "c"})
	want := "| 100 | go | 5.00 | 3.00 | 0.50 | 0.00 | 0.25 | 0.25 | 1.00 | 0.00 | 0.00 |\n"
	if !strings.Contains(b.String(), want) {
		t.Errorf("no row %q in\n%s", want, b.String())
	}
	if strings.Contains(b.String(), "| c |") {
		t.Errorf("a row for a target without the breakdown:\n%s", b.String())
	}
}
