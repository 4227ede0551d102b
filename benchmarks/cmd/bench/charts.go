package main

import (
	"fmt"
	"math"

	"github.com/mqttws/mqttws/benchmarks/frameio"
	"github.com/mqttws/mqttws/benchmarks/internal/report"
)

// panels lays the run's medians out as the chart's panels.
func panels(res *report.Results, p plan) []report.Panel {
	impls := []string{frameio.MQTTWS, frameio.Gorilla, frameio.Coder, frameio.TCP}
	var out []report.Panel
	for _, dir := range []string{"read", "write"} {
		pn := report.Panel{Title: "Frame I/O, server " + dir + " (log scale)", Unit: "MB/s", Log: true, Series: impls}
		for _, size := range p.frameSizes {
			pn.Groups = append(pn.Groups, report.SizeName(size))
			pn.Values = append(pn.Values, medians(res, report.Frame, fmt.Sprintf("%s/%d", dir, size), impls, "MB/s"))
		}
		out = append(out, pn)
	}
	e2e := report.Panel{Title: "End to end, paho N→1, messages received per second (log scale)", Unit: "msgs/s", Log: true, Series: e2eTargets()}
	for _, qos := range []int{1, 0} {
		for _, size := range p.e2eSizes {
			e2e.Groups = append(e2e.Groups, fmt.Sprintf("QoS %d, %s", qos, report.SizeName(size)))
			e2e.Values = append(e2e.Values, medians(res, report.E2E, fmt.Sprintf("qos%d/%d", qos, size), e2eTargets(), "msgs/s"))
		}
	}
	out = append(out, e2e)
	mem := report.Panel{Title: "Server memory per idle connection (RSS)", Unit: "KiB/conn", Series: idleTargets()}
	for _, n := range p.idleCounts {
		mem.Groups = append(mem.Groups, fmt.Sprintf("%d connections", n))
		mem.Values = append(mem.Values, medians(res, report.Memory, fmt.Sprintf("idle/%d", n), idleTargets(), "rss_KiB/conn"))
	}
	out = append(out, mem)
	return out
}

// medians returns one median per target, NaN where none was measured.
func medians(res *report.Results, suite, cas string, targets []string, metric string) []float64 {
	v := make([]float64, len(targets))
	for i, t := range targets {
		m, ok := res.Median(suite, cas, t, metric)
		if !ok {
			m = math.NaN()
		}
		v[i] = m
	}
	return v
}
