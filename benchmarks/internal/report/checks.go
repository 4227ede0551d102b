package report

import (
	"fmt"
	"strings"
)

// Verdict says whether a check met its goal.
type Verdict string

// Verdicts.
const (
	Met     Verdict = "yes"
	Missed  Verdict = "NO"
	Info    Verdict = "info" // measured for reference, no goal
	Missing Verdict = "n/a"  // not measured in this run
)

// Check is one line of the ratio table: a figure of this run against a
// goal, with the reason for the goal in one phrase.
type Check struct {
	Goal    string  // the goal and why, e.g. "frame I/O ≥ 1.5× gorilla: faster than …"
	Measure string  // what was compared, e.g. "read 1 KiB: mqttws / gorilla"
	Value   float64 // the ratio (or KiB, or allocs/op)
	Unit    string  // "×", "KiB/conn", "allocs/op"
	Want    string  // e.g. "≥ 1.50"
	Verdict Verdict
	Detail  string // the medians behind the value
	Before  string // the same check in the baseline run (CompareWith), formatted

	// NoWorseBy, when set, makes the goal "no worse than before": met when
	// Value ≤ max(before × NoWorseBy, before + NoWorseAdd).
	NoWorseBy, NoWorseAdd float64
}

// Frame I/O implementations (package frameio names).
const (
	implMQTTWS  = "mqttws"
	implGorilla = "gorilla"
	implCoder   = "coder"
	implTCP     = "tcp"
)

// E2E and memory targets (package targets names).
const (
	tMQTTWSMochi  = "mqttws+mochi"
	tMochiWS      = "mochi-ws"
	tMochiTCP     = "mochi-tcp"
	tMQTTWSProxy  = "mqttws-proxy"
	tMosquittoWS  = "mosquitto-ws"
	tMosquittoTCP = "mosquitto-tcp"
	tTCPProxy     = "tcp-proxy"
)

// Checks compares the run with the goals of the scale issue (issue 12), in
// a fixed order; figures without a goal are shown for reference. Sizes and
// counts are those the run measured.
func (r *Results) Checks(frameSizes, e2eSizes, idleCounts []int) []Check {
	var checks []Check
	checks = append(checks, r.memoryChecks(idleCounts)...)
	checks = append(checks, r.costChecks(e2eSizes)...)
	checks = append(checks, r.e2eChecks(e2eSizes)...)
	checks = append(checks, r.latencyChecks(e2eSizes)...)
	checks = append(checks, r.allocChecks(frameSizes)...)
	checks = append(checks, r.frameChecks(frameSizes)...)
	return checks
}

// allocChecks: 0 allocs/op on the steady-state read and write paths.
func (r *Results) allocChecks(sizes []int) []Check {
	var checks []Check
	for _, dir := range []string{"read", "write"} {
		c := Check{Goal: "0 allocs/op, steady state: garbage collection stays flat at any message rate", Measure: dir + ", every size: mqttws", Unit: "allocs/op", Want: "0", Verdict: Missing}
		var parts []string
		worst := -1.0
		for _, size := range sizes {
			v, ok := r.Median(Frame, fmt.Sprintf("%s/%d", dir, size), implMQTTWS, "allocs/op")
			if !ok {
				continue
			}
			worst = max(worst, v)
			parts = append(parts, fmt.Sprintf("%s %g", SizeName(size), v))
		}
		if worst >= 0 {
			c.Value = worst
			c.Verdict = verdict(worst == 0)
			c.Detail = strings.Join(parts, ", ")
		}
		checks = append(checks, c)
	}
	return checks
}

// frameChecks: writes ≥ 1.0× gorilla at every size; reads ≥ 0.5× raw TCP
// at 16 B and ≥ 0.7× at 128 B; both ways ≥ 0.85× raw TCP at 64 KiB. The
// other comparisons are shown for reference.
func (r *Results) frameChecks(sizes []int) []Check {
	const (
		goalGorilla = "frames: write ≥ 1.0× gorilla at every size: no WebSocket library in Go writes faster"
		goalTCP     = "frames: read ≥ 0.5× raw TCP at 16 B, ≥ 0.7× at 128 B, both ways ≥ 0.85× at 64 KiB: framing costs little"
		goalCoder   = "frames: mqttws ÷ coder/websocket, for reference"
	)
	tcpWant := map[string]float64{"read/16": 0.5, "read/128": 0.7, fmt.Sprintf("read/%d", 64<<10): 0.85, fmt.Sprintf("write/%d", 64<<10): 0.85}
	var checks []Check
	for _, dir := range []string{"read", "write"} {
		for _, size := range sizes {
			cas := fmt.Sprintf("%s/%d", dir, size)
			c := r.ratioCheck(Frame, cas, implMQTTWS, implGorilla, "MB/s", 1, dir == "write")
			c.Goal, c.Measure = goalGorilla, fmt.Sprintf("%s %s: mqttws / gorilla", dir, SizeName(size))
			checks = append(checks, c)
			want, targeted := tcpWant[cas]
			c = r.ratioCheck(Frame, cas, implMQTTWS, implTCP, "MB/s", want, targeted)
			c.Goal, c.Measure = goalTCP, fmt.Sprintf("%s %s: mqttws / tcp", dir, SizeName(size))
			checks = append(checks, c)
			c = r.ratioCheck(Frame, cas, implMQTTWS, implCoder, "MB/s", 0, false)
			c.Goal, c.Measure = goalCoder, fmt.Sprintf("%s %s: mqttws / coder", dir, SizeName(size))
			checks = append(checks, c)
		}
	}
	return checks
}

// e2eChecks: at QoS 1 (bounded in-flight window), the gateway ≥ 0.9×
// mosquitto over TCP and mqttws+mochi ≥ 0.95× mochi over TCP, at both
// sizes. QoS 0, where brokers drop messages for a lagging subscriber, and
// the WebSocket listeners are shown for reference, with losses.
func (r *Results) e2eChecks(sizes []int) []Check {
	var checks []Check
	for _, qos := range []int{1, 0} {
		for _, size := range sizes {
			cas := fmt.Sprintf("qos%d/%d", qos, size)
			for _, cmp := range []struct {
				a, b     string
				want     float64
				goal     string
				targeted bool
			}{
				{tMQTTWSProxy, tMosquittoTCP, 0.9, "throughput: gateway ≥ 0.9× mosquitto over TCP at QoS 1: the extra hop costs little", true},
				{tMQTTWSMochi, tMochiTCP, 0.95, "throughput: mqttws+mochi ≥ 0.95× mochi over TCP at QoS 1: WebSocket costs browsers next to nothing", true},
				{tMQTTWSProxy, tMosquittoWS, 0, "throughput against the brokers' own WebSocket listeners, for reference", false},
				{tMQTTWSMochi, tMochiWS, 0, "throughput against the brokers' own WebSocket listeners, for reference", false},
				{tTCPProxy, tMosquittoTCP, 0, "throughput of a plain TCP relay (splice, no WebSocket) in front of mosquitto, for reference: the floor of an extra hop", false},
				{tMQTTWSProxy, tTCPProxy, 0, "throughput of a plain TCP relay (splice, no WebSocket) in front of mosquitto, for reference: the floor of an extra hop", false},
			} {
				c := r.ratioCheck(E2E, cas, cmp.a, cmp.b, "msgs/s", cmp.want, cmp.targeted && qos == 1)
				c.Goal = cmp.goal
				c.Measure = fmt.Sprintf("QoS %d %s msgs/s: %s / %s", qos, SizeName(size), cmp.a, cmp.b)
				la, _ := r.Median(E2E, cas, cmp.a, "lost")
				lb, _ := r.Median(E2E, cas, cmp.b, "lost")
				if c.Verdict != Missing {
					c.Detail += fmt.Sprintf("; lost %g vs %g", la, lb)
				}
				checks = append(checks, c)
			}
		}
	}
	return checks
}

// costChecks: the gateway's own share of server CPU per message (gateway +
// mosquitto, less mosquitto over TCP alone) ≤ 25% of mosquitto's, at both
// sizes and QoS 0 and 1. Unlike msgs/s, CPU time per message does not
// depend on what else runs on the machine. mqttws+mochi's share above mochi
// over TCP, the WebSocket listeners' and a plain TCP relay's (the floor of any
// extra hop), for reference.
func (r *Results) costChecks(sizes []int) []Check {
	var checks []Check
	for _, qos := range []int{1, 0} {
		for _, size := range sizes {
			cas := fmt.Sprintf("qos%d/%d", qos, size)
			for _, cmp := range []struct {
				ws, tcp  string
				base     string // the denominator: tcp when empty
				targeted bool
			}{
				{tMQTTWSProxy, tMosquittoTCP, "", true},
				{tMosquittoWS, tMosquittoTCP, "", false},
				{tTCPProxy, tMosquittoTCP, "", false},
				// What the gateway costs beyond a hop that does nothing
				// but relay bytes: its WebSocket and MQTT work.
				{tMQTTWSProxy, tTCPProxy, tMosquittoTCP, false},
				{tMQTTWSMochi, tMochiTCP, "", false},
				{tMochiWS, tMochiTCP, "", false},
			} {
				if cmp.base == "" {
					cmp.base = cmp.tcp
				}
				c := Check{
					Goal:    "server CPU per message: the gateway's own share ≤ 25% of mosquitto's (0.25×)",
					Measure: fmt.Sprintf("QoS %d %s: (%s − %s) / %s", qos, SizeName(size), cmp.ws, cmp.tcp, cmp.base),
					Unit:    "×",
					Want:    "≤ 0.25",
					Verdict: Missing,
				}
				if !cmp.targeted {
					c.Want = "—"
				}
				ws, ok1 := r.Median(E2E, cas, cmp.ws, "server_cpu_us/msg")
				tcp, ok2 := r.Median(E2E, cas, cmp.tcp, "server_cpu_us/msg")
				base, ok3 := r.Median(E2E, cas, cmp.base, "server_cpu_us/msg")
				if ok1 && ok2 && ok3 && base > 0 {
					c.Value = (ws - tcp) / base
					c.Detail = fmt.Sprintf("%s vs %s server_cpu_us/msg", Num(ws), Num(tcp))
					if cmp.base != cmp.tcp {
						c.Detail += fmt.Sprintf(", %s %s", cmp.base, Num(base))
					}
					c.Verdict = Info
					if cmp.targeted {
						c.Verdict = verdict(c.Value <= 0.25)
					}
				}
				checks = append(checks, c)
			}
		}
	}
	return checks
}

// latencyChecks show p50 and p99 of the mqttws targets; with a baseline
// (CompareWith) they must be no worse than before, within a margin for a
// shared machine.
func (r *Results) latencyChecks(sizes []int) []Check {
	var checks []Check
	for _, qos := range []int{1, 0} {
		for _, size := range sizes {
			cas := fmt.Sprintf("qos%d/%d", qos, size)
			for _, t := range []string{tMQTTWSProxy, tMQTTWSMochi} {
				for _, metric := range []string{"p50_ms", "p99_ms"} {
					c := Check{
						Goal:       "latency: p50 and p99 no worse than before (within 20% or 1 ms, for noise)",
						Measure:    fmt.Sprintf("QoS %d %s %s: %s", qos, SizeName(size), strings.TrimSuffix(metric, "_ms"), t),
						Unit:       "ms",
						Want:       "≤ before",
						Verdict:    Missing,
						NoWorseBy:  1.2,
						NoWorseAdd: 1,
					}
					if v, ok := r.Median(E2E, cas, t, metric); ok {
						c.Value, c.Verdict = v, Info
					}
					checks = append(checks, c)
				}
			}
		}
	}
	return checks
}

// memoryChecks: what the WebSocket layer adds per idle connection above the
// same broker over TCP: ≤ 4 KiB for the gateway (lighter than mosquitto's
// own WebSocket listener), ≤ 2 KiB for mqttws+mochi; the listeners' figures
// for reference.
func (r *Results) memoryChecks(counts []int) []Check {
	var checks []Check
	for _, n := range counts {
		cas := fmt.Sprintf("idle/%d", n)
		for _, cmp := range []struct {
			ws, tcp string
			want    float64 // 0: for reference
		}{
			{tMQTTWSProxy, tMosquittoTCP, 4},
			{tMosquittoWS, tMosquittoTCP, 0},
			{tMQTTWSMochi, tMochiTCP, 2},
			{tMochiWS, tMochiTCP, 0},
		} {
			c := Check{
				Goal:    "idle memory: the gateway adds ≤ 4 KiB per connection above mosquitto over TCP, mqttws+mochi ≤ 2 KiB above mochi over TCP",
				Measure: fmt.Sprintf("%d idle, RSS/conn: %s − %s", n, cmp.ws, cmp.tcp),
				Unit:    "KiB/conn",
				Want:    fmt.Sprintf("≤ %g", cmp.want),
				Verdict: Missing,
			}
			ws, ok1 := r.Median(Memory, cas, cmp.ws, "rss_KiB/conn")
			tcp, ok2 := r.Median(Memory, cas, cmp.tcp, "rss_KiB/conn")
			if got := r.measuredConns(cas, cmp.ws, cmp.tcp); got != "" {
				c.Measure += " (" + got + " measured)"
			}
			if ok1 && ok2 {
				c.Value = ws - tcp
				c.Verdict = Info
				if cmp.want > 0 {
					c.Verdict = verdict(c.Value <= cmp.want)
				}
				c.Detail = fmt.Sprintf("%.1f vs %.1f KiB/conn", ws, tcp)
				hws, ok1 := r.Median(Memory, cas, cmp.ws, "heap_KiB/conn")
				htcp, ok2 := r.Median(Memory, cas, cmp.tcp, "heap_KiB/conn")
				if ok1 && ok2 {
					c.Detail += fmt.Sprintf("; Go heap %.1f vs %.1f", hws, htcp)
				}
			}
			if cmp.want == 0 {
				c.Want = "—"
			}
			checks = append(checks, c)
		}
	}
	return checks
}

// CompareWith fills each check's Before with the same check computed on
// base, an earlier run (nil: no comparison), and judges the checks whose
// goal is to be no worse than before.
func CompareWith(checks []Check, base *Results, frameSizes, e2eSizes, idleCounts []int) {
	if base == nil {
		return
	}
	before := map[string]Check{}
	for _, c := range base.Checks(frameSizes, e2eSizes, idleCounts) {
		before[c.Goal+"\x00"+c.Measure] = c
	}
	for i := range checks {
		c := &checks[i]
		b, ok := before[c.Goal+"\x00"+c.Measure]
		if !ok || b.Verdict == Missing {
			c.Before = "—"
			continue
		}
		c.Before = b.value()
		if c.NoWorseBy > 0 && c.Verdict != Missing {
			c.Want = fmt.Sprintf("≤ %s", Num(max(b.Value*c.NoWorseBy, b.Value+c.NoWorseAdd)))
			c.Verdict = verdict(c.Value <= max(b.Value*c.NoWorseBy, b.Value+c.NoWorseAdd))
		}
	}
}

// measuredConns returns the connection counts really opened for the targets
// when one is not the count asked for (the file-descriptor limit caps it),
// or "".
func (r *Results) measuredConns(cas string, targets ...string) string {
	var want int
	if _, err := fmt.Sscanf(cas, "idle/%d", &want); err != nil {
		return ""
	}
	var parts []string
	capped := false
	for _, t := range targets {
		n, ok := r.Median(Memory, cas, t, "conns")
		if !ok {
			continue
		}
		capped = capped || int(n) != want
		parts = append(parts, fmt.Sprintf("%s %d", t, int(n)))
	}
	if !capped {
		return ""
	}
	return strings.Join(parts, ", ")
}

// ratioCheck compares a with b on metric, wanting at least want when
// targeted.
func (r *Results) ratioCheck(suite, cas, a, b, metric string, want float64, targeted bool) Check {
	c := Check{Unit: "×", Want: fmt.Sprintf("≥ %.2f", want), Verdict: Missing}
	if !targeted {
		c.Want = "—"
	}
	ratio, ok := r.Ratio(suite, cas, a, b, metric)
	if !ok {
		return c
	}
	ma, _ := r.Median(suite, cas, a, metric)
	mb, _ := r.Median(suite, cas, b, metric)
	c.Value = ratio
	c.Detail = fmt.Sprintf("%s vs %s %s", Num(ma), Num(mb), metric)
	c.Verdict = Info
	if targeted {
		c.Verdict = verdict(ratio >= want)
	}
	return c
}

func verdict(ok bool) Verdict {
	if ok {
		return Met
	}
	return Missed
}

// SizeName writes a byte count the way the issue does: 16 B, 1 KiB, 1 MiB.
func SizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// Num formats a measurement with three significant digits or so.
func Num(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	case v >= 1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3g", v)
}
