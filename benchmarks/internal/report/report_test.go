package report

import (
	"math"
	"strings"
	"testing"
)

func TestRatioIsTheMedianOfPairedRounds(t *testing.T) {
	r := &Results{}
	for round, v := range map[int][2]float64{1: {10, 5}, 2: {30, 10}, 3: {8, 8}} {
		r.Add(Sample{Suite: Frame, Case: "read/1024", Target: "a", Metric: "MB/s", Round: round, Value: v[0]})
		r.Add(Sample{Suite: Frame, Case: "read/1024", Target: "b", Metric: "MB/s", Round: round, Value: v[1]})
	}
	ratio, ok := r.Ratio(Frame, "read/1024", "a", "b", "MB/s")
	if !ok || ratio != 2 {
		t.Fatalf("ratio %v %v, want the median of 2, 3 and 1: 2", ratio, ok)
	}
	m, _ := r.Median(Frame, "read/1024", "a", "MB/s")
	if m != 10 {
		t.Fatalf("median %v, want 10", m)
	}
	if _, ok := r.Ratio(Frame, "read/1024", "a", "missing", "MB/s"); ok {
		t.Fatal("a ratio with an unmeasured target")
	}
}

func TestChecksMarkMissedAndUnmeasuredTargets(t *testing.T) {
	r := &Results{}
	add := func(target string, v float64) {
		r.Add(Sample{Suite: Frame, Case: "read/1024", Target: target, Metric: "MB/s", Round: 1, Value: v})
	}
	add(implMQTTWS, 100)
	add(implGorilla, 100)
	add(implCoder, 50)
	var gorilla, coder, e2e Check
	for _, c := range r.Checks([]int{1024}, []int{64}, nil) {
		switch {
		case c.Measure == "read 1 KiB: mqttws / gorilla":
			gorilla = c
		case c.Measure == "read 1 KiB: mqttws / coder":
			coder = c
		case strings.HasPrefix(c.Measure, "QoS 1 64 B msgs/s: mqttws+mochi / mochi-ws"):
			e2e = c
		}
	}
	if gorilla.Verdict != Missed || gorilla.Value != 1 {
		t.Errorf("gorilla check %+v, want missed at 1.00×", gorilla)
	}
	if coder.Verdict != Met || coder.Value != 2 {
		t.Errorf("coder check %+v, want met at 2.00×", coder)
	}
	if e2e.Verdict != Missing {
		t.Errorf("e2e check %+v, want n/a", e2e)
	}
}

func TestSizeNames(t *testing.T) {
	for n, want := range map[int]string{16: "16 B", 1024: "1 KiB", 16 << 10: "16 KiB", 1 << 20: "1 MiB", 1500: "1500 B"} {
		if got := SizeName(n); got != want {
			t.Errorf("SizeName(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestLogScaleSpansWholeDecades(t *testing.T) {
	p := Panel{Log: true, Values: [][]float64{{3, math.NaN()}, {4500, 0}}}
	lo, hi := p.scale()
	if lo != 1 || hi != 10000 {
		t.Fatalf("scale %v..%v, want 1..10000", lo, hi)
	}
	if got := len(p.ticks(lo, hi)); got != 5 {
		t.Fatalf("%d ticks, want 5", got)
	}
}
