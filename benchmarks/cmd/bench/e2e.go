package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/mqttws/mqttws/benchmarks/internal/load"
	"github.com/mqttws/mqttws/benchmarks/internal/report"
	"github.com/mqttws/mqttws/benchmarks/internal/targets"
)

// runE2E measures end-to-end throughput and latency for every target, QoS
// and payload size. All targets run at once, idle but for the one being
// measured; each round measures them back to back for each setting,
// starting with a different one each round.
func runE2E(ctx context.Context, p plan, res *report.Results, profileDir string) error {
	names := available(e2eTargets())
	servers := make([]*server, 0, len(names))
	defer func() {
		for _, s := range servers {
			s.stop()
		}
	}()
	for _, t := range names {
		s, err := startServer(t)
		if err != nil {
			return fmt.Errorf("start %s: %w", t, err)
		}
		servers = append(servers, s)
		progressf("e2e: started %s", s.describe())
	}

	for round := 1; round <= p.e2eRounds; round++ {
		for _, qos := range []byte{0, 1} {
			for _, size := range p.e2eSizes {
				cas := fmt.Sprintf("qos%d/%d", qos, size)
				var line []string
				for i := range servers {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					s := servers[(i+round)%len(servers)]
					cfg := load.Config{
						URL:        s.url(),
						Publishers: p.publishers,
						Messages:   p.messages[size],
						Size:       size,
						QoS:        qos,
						Window:     p.window,
						Timeout:    p.e2eTimeout,
					}
					profiling := profileDir != "" && round == p.e2eRounds && s.proc != nil
					if profiling {
						path := filepath.Join(profileDir, fmt.Sprintf("e2e-%s-qos%d-%d.cpu.prof", fileName(s.target), qos, size))
						if err := s.proc.StartCPUProfile(path); err != nil {
							return err
						}
					}
					before, uerr := s.usage()
					r, err := load.Run(ctx, cfg)
					after, uerr2 := s.usage()
					if profiling {
						if err := s.proc.StopCPUProfile(); err != nil {
							return err
						}
					}
					if err != nil {
						line = append(line, fmt.Sprintf("%s failed: %v", s.target, err))
						continue
					}
					add := func(metric string, v float64) {
						res.Add(report.Sample{Suite: report.E2E, Case: cas, Target: s.target, Metric: metric, Round: round, Value: v})
					}
					add("msgs/s", r.MsgsPerSec())
					add("MB/s", r.MBPerSec(size))
					add("p50_ms", ms(r.P50))
					add("p99_ms", ms(r.P99))
					add("lost", float64(r.Lost()))
					add("sent", float64(r.Sent))
					if uerr == nil && uerr2 == nil && r.Received > 0 {
						// The server's own cost, which other processes on
						// the machine do not blur as they blur msgs/s.
						used := after.Sub(before)
						add("server_cpu_us/msg", used.CPUSeconds*1e6/float64(r.Received))
						// /proc/PID/io counts the read and write family only:
						// libwebsockets, under mosquitto's WebSocket
						// listener, uses send and recv, which it misses.
						if s.target != targets.MosquittoWS {
							add("server_syscalls/msg", float64(used.Syscalls)/float64(r.Received))
						}
					}
					note := ""
					if r.Lost() > 0 {
						note = fmt.Sprintf(" (lost %d)", r.Lost())
					}
					line = append(line, fmt.Sprintf("%s %s/s%s", s.target, report.Num(r.MsgsPerSec()), note))
				}
				progressf("e2e %d/%d QoS %d %s: %s", round, p.e2eRounds, qos, report.SizeName(size), strings.Join(line, ", "))
			}
		}
	}
	return nil
}

// fileName turns a target name into a file name part.
func fileName(target string) string { return strings.ReplaceAll(target, "+", "-") }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
