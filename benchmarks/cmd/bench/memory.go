package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/mqttws/mqttws/benchmarks/internal/idle"
	"github.com/mqttws/mqttws/benchmarks/internal/report"
	"github.com/mqttws/mqttws/benchmarks/internal/targets"
)

// warmConns are opened and closed before the baseline is taken, so that
// one-time costs (first connection, pools, runtime growth) are not counted
// per connection.
const warmConns = 64

// runMemory measures, for each count and target, the server memory each
// idle MQTT connection holds: a fresh server, a baseline, count connections
// through CONNECT/CONNACK, a pause, and the difference divided by count.
func runMemory(ctx context.Context, p plan, res *report.Results, profileDir string) error {
	names := available(idleTargets())
	for _, want := range p.idleCounts {
		cas := fmt.Sprintf("idle/%d", want)
		for _, t := range names {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			n := maxConns(t, want)
			if n < want {
				progressf("memory %s: %d connections instead of %d, within the file-descriptor limit of %d", t, n, want, fileLimit)
			}
			profile := ""
			if profileDir != "" && want == p.idleCounts[len(p.idleCounts)-1] {
				profile = filepath.Join(profileDir, fmt.Sprintf("idle-%s-%d", fileName(t), n))
			}
			m, err := measureIdle(ctx, t, n, profile)
			if err != nil {
				progressf("memory %d idle %s: %v", n, t, err)
				continue
			}
			add := func(metric string, v float64) {
				res.Add(report.Sample{Suite: report.Memory, Case: cas, Target: t, Metric: metric, Round: 1, Value: v})
			}
			perConn := func(b int64) float64 { return float64(b) / float64(n) / 1024 }
			add("conns", float64(n))
			add("rss_KiB/conn", perConn(m.rss))
			line := fmt.Sprintf("memory %d idle %s: RSS %.1f KiB/conn", n, t, perConn(m.rss))
			if m.goServer {
				add("heap_KiB/conn", perConn(m.heap))
				add("stack_KiB/conn", perConn(m.stacks))
				add("goroutines/conn", float64(m.goroutine)/float64(n))
				line += fmt.Sprintf(", Go heap %.1f, stacks %.1f, goroutines %.2f", perConn(m.heap), perConn(m.stacks), float64(m.goroutine)/float64(n))
				// Where the child's RSS goes: the runtime's memory classes,
				// and the rest of RSS, which the Go runtime does not hold
				// (or holds mapped but not yet touched, when negative).
				g := m.goMem
				rest := m.procRSS - g.Go()
				for _, part := range []struct {
					metric string
					bytes  int64
				}{
					{"heap_live_KiB/conn", g.HeapLive},
					{"heap_unused_KiB/conn", g.HeapUnused},
					{"heap_free_KiB/conn", g.HeapFree},
					{"os_stack_KiB/conn", g.OSStacks},
					{"mspan_KiB/conn", g.MSpan},
					{"gc_meta_KiB/conn", g.GCMeta},
					{"runtime_other_KiB/conn", g.Other},
					{"go_runtime_KiB/conn", g.Go()},
					{"go_rss_KiB/conn", m.procRSS},
					{"not_go_KiB/conn", rest},
					{"rss_file_KiB/conn", m.procFile},
				} {
					add(part.metric, perConn(part.bytes))
				}
				line += fmt.Sprintf("; of the Go process's RSS %.2f: heap live %.2f, unused %.2f, free %.2f, stacks %.2f, runtime metadata %.2f, other runtime %.2f, rest %.2f (file-backed %.2f)",
					perConn(m.procRSS), perConn(g.HeapLive), perConn(g.HeapUnused), perConn(g.HeapFree), perConn(g.Stacks+g.OSStacks),
					perConn(g.MSpan+g.GCMeta), perConn(g.Other), perConn(rest), perConn(m.procFile))
			}
			if m.goServer && m.broker {
				add("proxy_rss_KiB/conn", perConn(m.procRSS))
				add("broker_rss_KiB/conn", perConn(m.brokerRSS))
				line += fmt.Sprintf(" (proxy %.1f + mosquitto %.1f)", perConn(m.procRSS), perConn(m.brokerRSS))
			}
			progressf("%s", line)
		}
	}
	return nil
}

// fdReserve is the file descriptors left for everything but connections.
const fdReserve = 200

// maxConns returns want, or fewer when the file-descriptor limit does not
// allow that many: the runner holds one descriptor per connection, the
// servers one, and the proxy two (client and broker).
func maxConns(target string, want int) int {
	perConn := uint64(1)
	if target == targets.MQTTWSProxy {
		perConn = 2
	}
	if fileLimit == 0 || fileLimit < fdReserve {
		return want
	}
	return min(want, int((fileLimit-fdReserve)/perConn))
}

// measureIdle returns what n idle connections add to target's memory. With
// profile set, an in-process target also writes heap and goroutine
// profiles, with the connections open, to profile+".heap.prof" and
// profile+".goroutine.prof".
func measureIdle(ctx context.Context, target string, n int, profile string) (memory, error) {
	var d memory
	s, err := startServer(target)
	if err != nil {
		return d, err
	}
	defer s.stop()

	warm, err := idle.Open(ctx, s.addr, s.path(), warmConns, nil)
	if err != nil {
		return d, fmt.Errorf("warm-up: %w", err)
	}
	warm.Close()
	time.Sleep(500 * time.Millisecond)
	before, err := s.measure()
	if err != nil {
		return d, err
	}
	t0 := time.Now()
	conns, err := idle.Open(ctx, s.addr, s.path(), n, func(k int) {
		if k%5000 == 0 {
			progressf("memory %s: %d/%d connected", target, k, n)
		}
	})
	if err != nil {
		return d, err
	}
	defer conns.Close()
	opened := time.Since(t0)
	// Let the server finish whatever follows CONNACK.
	time.Sleep(time.Second)
	after, err := s.measure()
	if err != nil {
		return d, err
	}
	progressf("memory %s: %d connections opened in %v", target, n, opened.Round(time.Millisecond))
	if profile != "" && s.proc != nil {
		if err := s.proc.WriteHeapProfile(profile + ".heap.prof"); err != nil {
			return d, err
		}
		if err := s.proc.WriteGoroutineProfile(profile + ".goroutine.prof"); err != nil {
			return d, err
		}
	}
	return memory{
		goServer:  s.proc != nil,
		broker:    s.broker != nil,
		rss:       after.rss - before.rss,
		procRSS:   after.procRSS - before.procRSS,
		brokerRSS: after.brokerRSS - before.brokerRSS,
		heap:      after.heap - before.heap,
		stacks:    after.stacks - before.stacks,
		goroutine: after.goroutine - before.goroutine,
		procFile:  after.procFile - before.procFile,
		goMem:     after.goMem.Sub(before.goMem),
	}, nil
}
