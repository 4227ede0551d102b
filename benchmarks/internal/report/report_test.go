package report

import (
	"math"
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
	add := func(cas, target string, v float64) {
		r.Add(Sample{Suite: Frame, Case: cas, Target: target, Metric: "MB/s", Round: 1, Value: v})
	}
	add("write/1024", implMQTTWS, 90)
	add("write/1024", implGorilla, 100)
	add("read/16", implMQTTWS, 60)
	add("read/16", implTCP, 100)
	checks := map[string]Check{}
	for _, c := range r.Checks([]int{16, 1024}, []int{64}, nil) {
		checks[c.Measure] = c
	}
	if c := checks["write 1 KiB: mqttws / gorilla"]; c.Verdict != Missed || c.Value != 0.9 {
		t.Errorf("gorilla check %+v, want missed at 0.90×", c)
	}
	if c := checks["read 16 B: mqttws / tcp"]; c.Verdict != Met || c.Value != 0.6 {
		t.Errorf("tcp check %+v, want met at 0.60×", c)
	}
	if c := checks["QoS 1 64 B msgs/s: mqttws-proxy / mosquitto-tcp"]; c.Verdict != Missing {
		t.Errorf("e2e check %+v, want n/a", c)
	}
}

func TestCompareWithJudgesLatencyAgainstTheBaseline(t *testing.T) {
	run := func(p99 float64) *Results {
		r := &Results{}
		for _, target := range []string{tMQTTWSProxy, tMQTTWSMochi} {
			r.Add(Sample{Suite: E2E, Case: "qos1/64", Target: target, Metric: "p99_ms", Round: 1, Value: p99})
		}
		return r
	}
	dir := t.TempDir()
	if err := run(10).WriteCSV(dir + "/base.csv"); err != nil {
		t.Fatal(err)
	}
	base, err := ReadCSV(dir + "/base.csv")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		p99  float64
		want Verdict
	}{{11.5, Met}, {13, Missed}} {
		checks := run(tc.p99).Checks(nil, []int{64}, nil)
		CompareWith(checks, base, nil, []int{64}, nil)
		for _, c := range checks {
			if c.Measure == "QoS 1 64 B p99: mqttws-proxy" && (c.Verdict != tc.want || c.Before != "10 ms") {
				t.Errorf("p99 %v against 10: %+v, want %s", tc.p99, c, tc.want)
			}
		}
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
