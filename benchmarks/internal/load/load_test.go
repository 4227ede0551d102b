package load

import (
	"testing"
	"time"
)

func TestPercentileIsNearestRank(t *testing.T) {
	var l []time.Duration
	for i := 1; i <= 100; i++ {
		l = append(l, time.Duration(i))
	}
	if got := percentile(l, 0.50); got != 50 {
		t.Errorf("p50 %v, want 50", got)
	}
	if got := percentile(l, 0.99); got != 99 {
		t.Errorf("p99 %v, want 99", got)
	}
	if got := percentile(nil, 0.99); got != 0 {
		t.Errorf("p99 of nothing %v, want 0", got)
	}
}
