// Package report keeps the measurements of one run, checks them against
// the targets of the benchmarks issue, and writes them out: a text table,
// a Markdown table, CSV and an SVG chart.
package report

import (
	"encoding/csv"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Suites of measurements.
const (
	Frame  = "frame"  // frame I/O micro-benchmarks
	E2E    = "e2e"    // end-to-end MQTT throughput and latency
	Memory = "memory" // memory per idle connection
)

// Sample is one measured value.
type Sample struct {
	Suite  string  // Frame, E2E or Memory
	Case   string  // what was measured, e.g. "read/1024", "qos1/64", "idle/10000"
	Target string  // the server measured
	Metric string  // unit, e.g. "MB/s", "allocs/op", "msgs/s", "rss_KiB/conn"
	Round  int     // which repetition; samples of one round were taken together
	Value  float64 //
}

// Results holds every sample of one run.
type Results struct {
	Mode    string
	Machine string
	Source  string // the commit measured
	Load    string // load averages seen during the run, for context
	// Baseline says which earlier run the checks' Before come from ("":
	// none).
	Baseline string
	Started  time.Time
	Elapsed  time.Duration
	Samples  []Sample
}

// Add records a sample.
func (r *Results) Add(s Sample) { r.Samples = append(r.Samples, s) }

// Values returns the values of one measurement, by round.
func (r *Results) Values(suite, cas, target, metric string) map[int]float64 {
	v := map[int]float64{}
	for _, s := range r.Samples {
		if s.Suite == suite && s.Case == cas && s.Target == target && s.Metric == metric {
			v[s.Round] = s.Value
		}
	}
	return v
}

// Median returns the median of one measurement over its rounds.
func (r *Results) Median(suite, cas, target, metric string) (float64, bool) {
	v := r.Values(suite, cas, target, metric)
	if len(v) == 0 {
		return 0, false
	}
	all := make([]float64, 0, len(v))
	for _, x := range v {
		all = append(all, x)
	}
	return median(all), true
}

// Ratio returns the median, over the rounds both were measured in, of the
// ratio of a's value to b's: rounds pair measurements taken moments apart,
// so that a machine busy with something else weighs on both.
func (r *Results) Ratio(suite, cas, a, b, metric string) (float64, bool) {
	va := r.Values(suite, cas, a, metric)
	vb := r.Values(suite, cas, b, metric)
	var ratios []float64
	for round, x := range va {
		if y, ok := vb[round]; ok && y != 0 {
			ratios = append(ratios, x/y)
		}
	}
	if len(ratios) == 0 {
		return 0, false
	}
	return median(ratios), true
}

// Cases returns the distinct cases of a suite, in the order first seen.
func (r *Results) Cases(suite string) []string {
	var cases []string
	for _, s := range r.Samples {
		if s.Suite == suite && !slices.Contains(cases, s.Case) {
			cases = append(cases, s.Case)
		}
	}
	return cases
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// ReadCSV reads what WriteCSV wrote: every round's value of every
// measurement, as the samples of a Results (an earlier run, to compare
// with).
func ReadCSV(path string) (*Results, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(rows) == 0 || strings.Join(rows[0], ",") != "suite,case,target,metric,median,rounds,values" {
		return nil, fmt.Errorf("%s: not a results.csv of cmd/bench (its header is wrong)", path)
	}
	r := &Results{Source: path}
	for i, row := range rows[1:] {
		for round, v := range strings.Split(row[6], ";") {
			value, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return nil, fmt.Errorf("%s line %d: %w", path, i+2, err)
			}
			r.Add(Sample{Suite: row[0], Case: row[1], Target: row[2], Metric: row[3], Round: round + 1, Value: value})
		}
	}
	return r, nil
}
