package report

import (
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// WriteText prints the ratio table for a terminal, grouped by target.
func WriteText(w io.Writer, checks []Check) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	goal := ""
	for _, c := range grouped(checks) {
		if c.Goal != goal {
			goal = c.Goal
			fmt.Fprintf(tw, "%s\n", goal)
		}
		before := ""
		if c.Before != "" {
			before = "before " + c.Before
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", c.Measure, before, c.value(), c.Want, c.Verdict, c.Detail)
	}
	return tw.Flush()
}

// grouped returns checks with those of one goal together, goals in the
// order they first appear.
func grouped(checks []Check) []Check {
	var goals []string
	for _, c := range checks {
		if !slices.Contains(goals, c.Goal) {
			goals = append(goals, c.Goal)
		}
	}
	out := make([]Check, 0, len(checks))
	for _, g := range goals {
		for _, c := range checks {
			if c.Goal == g {
				out = append(out, c)
			}
		}
	}
	return out
}

// value formats the check's figure with its unit.
func (c Check) value() string {
	if c.Verdict == Missing {
		return "—"
	}
	switch c.Unit {
	case "×":
		return fmt.Sprintf("%.2f×", c.Value)
	case "KiB/conn":
		return fmt.Sprintf("%+.1f KiB", c.Value)
	}
	return fmt.Sprintf("%g %s", c.Value, c.Unit)
}

// Markdown returns the ratio table and the medians behind it as Markdown.
func (r *Results) Markdown(checks []Check, frameSizes, e2eSizes, idleCounts []int, e2eTargets, idleTargets []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Mode `%s`, source `%s`, started %s, took %s. Machine: %s. Load average (1 min) at the start of each suite and at the end: %s.\n\n", r.Mode, r.Source, r.Started.Format("2006-01-02 15:04 MST"), r.Elapsed.Round(1e9), r.Machine, r.Load)
	if r.Baseline != "" {
		fmt.Fprintf(&b, "The column \"before\" holds the same checks computed on %s.\n\n", r.Baseline)
	}
	b.WriteString("| goal | measured | before | value | want | met | medians |\n|---|---|---|---|---|---|---|\n")
	goal := ""
	for _, c := range grouped(checks) {
		g := ""
		if c.Goal != goal {
			goal, g = c.Goal, "**"+c.Goal+"**"
		}
		verdict := string(c.Verdict)
		if c.Verdict == Met || c.Verdict == Missed {
			verdict = "**" + verdict + "**"
		}
		before := c.Before
		if before == "" {
			before = "—"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", g, c.Measure, before, c.value(), c.Want, verdict, c.Detail)
	}

	b.WriteString("\nFrame I/O, MB/s (median), with allocs/op and system calls per frame (read or write) of each server:\n\n")
	impls := []string{implMQTTWS, implGorilla, implCoder, implTCP}
	b.WriteString("| op | size |")
	for _, impl := range impls {
		fmt.Fprintf(&b, " %s |", impl)
	}
	b.WriteString("\n|---|---|" + strings.Repeat("---|", len(impls)) + "\n")
	for _, dir := range []string{"read", "write"} {
		for _, size := range frameSizes {
			cas := fmt.Sprintf("%s/%d", dir, size)
			fmt.Fprintf(&b, "| %s | %s |", dir, SizeName(size))
			for _, impl := range impls {
				mb, ok := r.Median(Frame, cas, impl, "MB/s")
				if !ok {
					b.WriteString(" — |")
					continue
				}
				allocs, _ := r.Median(Frame, cas, impl, "allocs/op")
				sys, _ := r.Median(Frame, cas, impl, "syscalls/op")
				fmt.Fprintf(&b, " %s (%g a, %.2f sc) |", Num(mb), allocs, sys)
			}
			b.WriteString("\n")
		}
	}

	b.WriteString("\nEnd to end, medians: msgs/s received, MB/s, p50 / p99 latency in ms, messages lost of those sent, and the server side's CPU time and read/write system calls per message received (broker, plus proxy where there is one; system calls of the read and write family, which libwebsockets under mosquitto's WebSocket listener does not use):\n\n")
	b.WriteString("| QoS | size | target | msgs/s | MB/s | p50 ms | p99 ms | lost / sent | server CPU µs/msg | server syscalls/msg |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, qos := range []int{0, 1} {
		for _, size := range e2eSizes {
			cas := fmt.Sprintf("qos%d/%d", qos, size)
			for _, t := range e2eTargets {
				msgs, ok := r.Median(E2E, cas, t, "msgs/s")
				if !ok {
					continue
				}
				mb, _ := r.Median(E2E, cas, t, "MB/s")
				p50, _ := r.Median(E2E, cas, t, "p50_ms")
				p99, _ := r.Median(E2E, cas, t, "p99_ms")
				lost, _ := r.Median(E2E, cas, t, "lost")
				sent, _ := r.Median(E2E, cas, t, "sent")
				cpu, _ := r.Median(E2E, cas, t, "server_cpu_us/msg")
				sys := "—"
				if v, ok := r.Median(E2E, cas, t, "server_syscalls/msg"); ok {
					sys = Num(v)
				}
				fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s | %g / %g | %s | %s |\n", qos, SizeName(size), t, Num(msgs), Num(mb), Num(p50), Num(p99), lost, sent, Num(cpu), sys)
			}
		}
	}

	b.WriteString("\nIdle connections, server memory per connection in KiB (RSS after a GC that returns free memory; Go heap and stacks where the server is Go; the proxy's RSS includes its mosquitto's):\n\n")
	b.WriteString("| connections | target | measured | RSS | Go heap | stacks |\n|---|---|---|---|---|---|\n")
	for _, n := range idleCounts {
		cas := fmt.Sprintf("idle/%d", n)
		for _, t := range idleTargets {
			rss, ok := r.Median(Memory, cas, t, "rss_KiB/conn")
			if !ok {
				continue
			}
			heap, okh := r.Median(Memory, cas, t, "heap_KiB/conn")
			stack, _ := r.Median(Memory, cas, t, "stack_KiB/conn")
			hs, ss := "—", "—"
			if okh {
				hs, ss = fmt.Sprintf("%.1f", heap), fmt.Sprintf("%.1f", stack)
			}
			conns, _ := r.Median(Memory, cas, t, "conns")
			fmt.Fprintf(&b, "| %d | %s | %d | %.1f | %s | %s |\n", n, t, int(conns), rss, hs, ss)
		}
	}
	r.writeMemoryBreakdown(&b, idleCounts, idleTargets)
	return b.String()
}

// breakdownParts are the columns of the memory breakdown: the Go process's
// RSS per connection, split into the Go runtime's memory classes and the
// rest. A column is the sum of its metrics.
var breakdownParts = []struct {
	head    string
	metrics []string
}{
	{"heap live", []string{"heap_live_KiB/conn"}},
	{"heap unused in spans", []string{"heap_unused_KiB/conn"}},
	{"heap free", []string{"heap_free_KiB/conn"}},
	{"stacks", []string{"stack_KiB/conn", "os_stack_KiB/conn"}},
	{"runtime metadata", []string{"mspan_KiB/conn", "gc_meta_KiB/conn"}},
	{"other runtime", []string{"runtime_other_KiB/conn"}},
	{"rest of RSS", []string{"not_go_KiB/conn"}},
	{"of which file-backed", []string{"rss_file_KiB/conn"}},
}

// writeMemoryBreakdown writes where each idle connection's bytes go in
// the in-process targets' Go process, if the results have the breakdown.
func (r *Results) writeMemoryBreakdown(b *strings.Builder, idleCounts []int, idleTargets []string) {
	header := false
	for _, n := range idleCounts {
		cas := fmt.Sprintf("idle/%d", n)
		for _, t := range idleTargets {
			rss, ok := r.Median(Memory, cas, t, "go_rss_KiB/conn")
			if !ok {
				continue
			}
			if !header {
				header = true
				b.WriteString("\nWhere the bytes go, in the Go process of each in-process target (the proxy's, without its mosquitto), KiB per connection: the runtime/metrics memory classes after a GC that returns free memory, and the rest of RSS; the parts add up to RSS. " +
					"Heap unused is the free space in spans that hold live objects (fragmentation); heap free is free spans not yet returned to the system; runtime metadata is the span descriptors and the GC's and allocator's bookkeeping; other runtime is the runtime's persistent allocations, mostly the netpoller's descriptor for each socket. " +
					"The rest of RSS is what the runtime does not count: file-backed pages (the executable, given apart) and other mappings. It is negative when the runtime counts memory the process has never touched, such as a large buffer allocated from fresh pages and never written. Kernel socket buffers are not in RSS.\n\n")
				b.WriteString("| connections | target | RSS |")
				for _, p := range breakdownParts {
					b.WriteString(" " + p.head + " |")
				}
				b.WriteString("\n|---|---|---|" + strings.Repeat("---|", len(breakdownParts)) + "\n")
			}
			fmt.Fprintf(b, "| %d | %s | %.2f |", n, t, rss)
			for _, p := range breakdownParts {
				sum, found := 0.0, false
				for _, m := range p.metrics {
					if v, ok := r.Median(Memory, cas, t, m); ok {
						sum, found = sum+v, true
					}
				}
				if !found {
					b.WriteString(" — |")
					continue
				}
				fmt.Fprintf(b, " %.2f |", sum)
			}
			b.WriteString("\n")
		}
	}
}

// WriteCSV writes one row per measurement: its median and every round's
// value.
func (r *Results) WriteCSV(path string) error {
	type key struct{ suite, cas, target, metric string }
	var keys []key
	for _, s := range r.Samples {
		k := key{s.Suite, s.Case, s.Target, s.Metric}
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write([]string{"suite", "case", "target", "metric", "median", "rounds", "values"})
	for _, k := range keys {
		vals := r.Values(k.suite, k.cas, k.target, k.metric)
		rounds := make([]int, 0, len(vals))
		for round := range vals {
			rounds = append(rounds, round)
		}
		slices.Sort(rounds)
		strs := make([]string, len(rounds))
		for i, round := range rounds {
			strs[i] = strconv.FormatFloat(vals[round], 'g', 6, 64)
		}
		m, _ := r.Median(k.suite, k.cas, k.target, k.metric)
		_ = w.Write([]string{k.suite, k.cas, k.target, k.metric, strconv.FormatFloat(m, 'g', 6, 64), strconv.Itoa(len(vals)), strings.Join(strs, ";")})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
