// Command bench runs every benchmark of mqttws side by side with its rivals
// and reports the ratios against its goals:
//
//	go run ./cmd/bench -mode quick   # under 5 minutes
//	go run ./cmd/bench -mode full    # longer runs, more rounds, up to 25k connections
//
// It runs the frame I/O micro-benchmarks (package frameio), end-to-end MQTT
// throughput and latency with paho clients (package load), and memory per
// idle connection (package idle), prints progress to standard error and the
// ratio table to standard output, and writes results.csv, chart.svg and
// latest.md under -out (a new scratch directory unless given; -update writes
// the committed results/ instead).
//
// Started as "bench serve ...", it is instead one of the in-process servers
// under test (package proc): the runner measures their memory in a process
// of their own.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/mqttws/mqttws/benchmarks/internal/proc"
	"github.com/mqttws/mqttws/benchmarks/internal/report"
	"github.com/mqttws/mqttws/benchmarks/internal/sysinfo"
	"github.com/mqttws/mqttws/benchmarks/internal/targets"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == proc.Command {
		os.Exit(proc.Main(os.Args[2:]))
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// suites, in the order they run.
var suites = []string{report.Frame, report.E2E, report.Memory}

func run(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	mode := fs.String("mode", "quick", "quick (under 5 minutes) or full")
	out := fs.String("out", "", "directory for results.csv, chart.svg and latest.md (a new directory under the system's temporary directory when empty)")
	update := fs.Bool("update", false, "write the results to results/, the ones committed with the repository, instead of -out")
	only := fs.String("only", strings.Join(suites, ","), "suites to run, comma-separated: "+strings.Join(suites, ", "))
	profile := fs.String("profile", "", "directory for profiles of the in-process servers: CPU during the last end-to-end round, heap and goroutines with the most idle connections (none when empty)")
	targetList := fs.String("targets", "", "end-to-end and memory targets to run, comma-separated (all when empty): "+strings.Join(targets.All, ", "))
	rounds := fs.Int("rounds", 0, "repetitions of every measurement, overriding the mode's (0: the mode's)")
	baseline := fs.String("baseline", "", "results.csv of an earlier run (e.g. of the commit before a change, written by -out): the tables then show each check's figure in it as \"before\", and latency must be no worse")
	readme := fs.String("readme", "", "Markdown file whose section between <!-- bench:begin --> and <!-- bench:end --> gets the latest results (none when empty)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "bench: runs mqttws's benchmarks side by side with gorilla, coder, mochi's and mosquitto's listeners and raw TCP, and compares them with the goals.")
		fmt.Fprintln(fs.Output(), "\nUsage: go run ./cmd/bench [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	switch {
	case *update && *out != "":
		return fmt.Errorf("-update writes results/: give -out or -update, not both")
	case *update:
		*out = "results"
	case *out == "":
		dir, err := os.MkdirTemp("", "mqttws-bench-")
		if err != nil {
			return err
		}
		*out = dir
	}
	p, ok := plans[*mode]
	if !ok {
		return fmt.Errorf("unknown -mode %q: quick or full", *mode)
	}
	if *rounds > 0 {
		p.frameRounds, p.e2eRounds = *rounds, *rounds
	}
	if *targetList != "" {
		chosen = strings.Split(*targetList, ",")
		for _, t := range chosen {
			if !slices.Contains(targets.All, t) {
				return fmt.Errorf("unknown target %q in -targets: %s", t, strings.Join(targets.All, ", "))
			}
		}
	}
	selected := strings.Split(*only, ",")
	for _, s := range selected {
		if !slices.Contains(suites, s) {
			return fmt.Errorf("unknown suite %q in -only: %s", s, strings.Join(suites, ", "))
		}
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	if *profile != "" {
		if err := os.MkdirAll(*profile, 0o755); err != nil {
			return err
		}
	}
	limit, err := sysinfo.RaiseFileLimit(proc.FileLimit)
	if err != nil {
		progressf("note: %v", err)
	}
	fileLimit = limit

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	machine := sysinfo.Describe()
	res := &report.Results{Mode: *mode, Machine: machine.String(), Source: sysinfo.Revision(), Started: time.Now()}
	progressf("mode %s, source %s, on %s", *mode, res.Source, machine)

	var errs []error
	for _, suite := range suites {
		if !slices.Contains(selected, suite) || ctx.Err() != nil {
			continue
		}
		noteLoad(res)
		var err error
		switch suite {
		case report.Frame:
			err = runFrames(ctx, p, res)
		case report.E2E:
			err = runE2E(ctx, p, res, *profile)
		case report.Memory:
			err = runMemory(ctx, p, res, *profile)
		}
		if err != nil {
			progressf("%s: %v", suite, err)
			errs = append(errs, fmt.Errorf("%s: %w", suite, err))
		}
	}
	res.Elapsed = time.Since(res.Started)
	noteLoad(res)

	checks := res.Checks(p.frameSizes, p.e2eSizes, p.idleCounts)
	if *baseline != "" {
		base, err := report.ReadCSV(*baseline)
		if err != nil {
			return fmt.Errorf("-baseline: %w", err)
		}
		report.CompareWith(checks, base, p.frameSizes, p.e2eSizes, p.idleCounts)
		res.Baseline = *baseline
	}
	fmt.Printf("\nmqttws / rival, medians of paired rounds (%s mode, %s):\n\n", *mode, res.Elapsed.Round(time.Second))
	if err := report.WriteText(os.Stdout, checks); err != nil {
		return err
	}
	if err := writeOutputs(res, checks, p, *out, *readme); err != nil {
		return err
	}
	return errors.Join(errs...)
}

// writeOutputs writes the CSV, the chart and the Markdown tables, and
// updates the README section when asked.
func writeOutputs(res *report.Results, checks []report.Check, p plan, out, readme string) error {
	csvPath := filepath.Join(out, "results.csv")
	svgPath := filepath.Join(out, "chart.svg")
	mdPath := filepath.Join(out, "latest.md")
	if err := res.WriteCSV(csvPath); err != nil {
		return err
	}
	title := fmt.Sprintf("mqttws benchmarks, %s mode, %s", res.Mode, res.Started.Format("2006-01-02"))
	if err := report.WriteSVG(svgPath, title, panels(res, p)); err != nil {
		return err
	}
	md := res.Markdown(checks, p.frameSizes, p.e2eSizes, p.idleCounts, e2eTargets(), idleTargets())
	if err := os.WriteFile(mdPath, []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s, %s, %s\n", csvPath, svgPath, mdPath)
	if readme != "" {
		if err := updateReadme(readme, md); err != nil {
			return err
		}
		fmt.Printf("updated %s\n", readme)
	}
	return nil
}

// Markers of the README section the runner rewrites.
const (
	beginMarker = "<!-- bench:begin -->"
	endMarker   = "<!-- bench:end -->"
)

// updateReadme replaces the text between the markers of path with md.
func updateReadme(path, md string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i := strings.Index(s, beginMarker)
	j := strings.Index(s, endMarker)
	if i < 0 || j < i {
		return fmt.Errorf("%s has no %s … %s section", path, beginMarker, endMarker)
	}
	s = s[:i+len(beginMarker)] + "\n" + md + "\n" + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}

// noteLoad records the load average, and says when the machine is busy
// with other work: msgs/s then moves from round to round, while the
// servers' CPU time and system calls per message do not.
func noteLoad(res *report.Results) {
	load := sysinfo.LoadAverage()
	if res.Load != "" {
		res.Load += ", "
	}
	res.Load += fmt.Sprintf("%.1f", load)
	if cpus := runtime.NumCPU(); load > float64(cpus) {
		progressf("note: load average %.1f on %d CPUs: other work competes with the measurements", load, cpus)
	}
}

// fileLimit is the RLIMIT_NOFILE in force for the runner and its children.
var fileLimit uint64

// start is when the runner began, for progress lines.
var start = time.Now()

// progressf prints a progress line to standard error, with the time since
// the start.
func progressf(format string, args ...any) {
	d := time.Since(start).Round(time.Second)
	fmt.Fprintf(os.Stderr, "[%02d:%02d] %s\n", int(d.Minutes()), int(d.Seconds())%60, fmt.Sprintf(format, args...))
}
