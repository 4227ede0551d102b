package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"testing"

	"github.com/mqttws/mqttws/benchmarks/frameio"
	"github.com/mqttws/mqttws/benchmarks/internal/report"
)

// runFrames runs the frame I/O benchmarks p.frameRounds times. Within a
// round, the four servers run back to back for each size, starting with a
// different one each round, so that a busy moment of the machine does not
// always fall on the same server.
func runFrames(ctx context.Context, p plan, res *report.Results) error {
	testing.Init()
	if err := flag.CommandLine.Set("test.benchtime", p.benchtime.String()); err != nil {
		return err
	}
	servers := frameio.Servers()
	for round := 1; round <= p.frameRounds; round++ {
		for _, dir := range []string{"read", "write"} {
			for _, size := range p.frameSizes {
				cas := fmt.Sprintf("%s/%d", dir, size)
				var line []string
				for i := range servers {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					srv := servers[(i+round)%len(servers)]
					bench, metric := frameio.Read(srv, size), "reads/op"
					if dir == "write" {
						bench, metric = frameio.Write(srv, size), "writes/op"
					}
					r, err := frameio.Run(bench)
					if err != nil {
						line = append(line, fmt.Sprintf("%s failed: %v", srv.Name, err))
						continue
					}
					mbps := float64(r.Bytes) * float64(r.N) / r.T.Seconds() / 1e6
					add := func(metric string, v float64) {
						res.Add(report.Sample{Suite: report.Frame, Case: cas, Target: srv.Name, Metric: metric, Round: round, Value: v})
					}
					add("MB/s", mbps)
					add("ns/op", float64(r.NsPerOp()))
					add("allocs/op", float64(r.AllocsPerOp()))
					add("B/op", float64(r.AllocedBytesPerOp()))
					if v, ok := r.Extra[metric]; ok {
						add("syscalls/op", v)
					}
					line = append(line, fmt.Sprintf("%s %s MB/s", srv.Name, report.Num(mbps)))
				}
				progressf("frame %d/%d %s %s: %s", round, p.frameRounds, dir, report.SizeName(size), strings.Join(line, ", "))
			}
		}
	}
	return nil
}
