package compression

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mqttws/mqttws/internal/leakcheck"
)

// TestMain makes the test binary a broker when BrokerEnv is set
// (StartBroker); otherwise it runs the tests and fails if goroutines
// outlive them.
func TestMain(m *testing.M) {
	if os.Getenv(BrokerEnv) != "" {
		os.Exit(BrokerMain())
	}
	leakcheck.Main(m)
}

// e2eLoad returns the load of one end-to-end run of series: 4 publishers
// (2 when quick) and about 32 MiB of payload in all, 2000 to 20000
// messages.
func e2eLoad(series [][]byte, quick bool) Load {
	if quick {
		return Load{Series: series, Publishers: 2, Messages: 20, Window: 16, Timeout: 20 * time.Second}
	}
	const publishers = 4
	total := min(20000, max(2000, (32<<20)/len(series[0])))
	return Load{Series: series, Publishers: publishers, Messages: total / publishers, Window: 16, Timeout: 60 * time.Second}
}

// e2eRow is the rounds of one payload and client, by mode.
type e2eRow struct {
	payload, client string
	runs            map[Mode][]E2EResult
}

// TestEndToEndReport prints, for each payload and client stack, compression
// off, on, and on with a history of HistoryBytes (server-side context
// takeover) through mochi-mqtt behind an mqttws.Handler in a broker process
// of its own: bytes on the wire per message (both ways, counted by the
// broker's kernel), the broker's CPU and system calls per message, the
// clients' CPU per message, messages per second and messages lost, the
// medians of rounds whose order of modes rotates; then the broker's memory
// per idle connection, off and on. Publishers send the payload's Series in
// turn. Without -report it checks the harness with a few messages: every
// message arrives intact; every connection negotiated permessage-deflate
// when the server has it on and none when off; with a history, MQTT.js
// (ws) got context takeover and paho (gorilla, which offers
// server_no_context_takeover) did not; JSON takes fewer bytes on the wire
// compressed:
//
//	go test -run TestEndToEndReport -v ./compression -args -report
func TestEndToEndReport(t *testing.T) {
	if err := CheckNode(); err != nil {
		t.Fatal(err)
	}
	quick := !*report
	n := *rounds
	if quick {
		n = 1
	}
	ctx := context.Background()
	var rows []*e2eRow
	for _, p := range Payloads() {
		for _, client := range []string{ClientPaho, ClientNode} {
			row := &e2eRow{payload: p.Name, client: client, runs: map[Mode][]E2EResult{}}
			rows = append(rows, row)
			l := e2eLoad(p.Series, quick)
			for r := range n {
				for _, mode := range rotated(Modes(), r) {
					start := time.Now()
					res, err := MeasureEndToEnd(ctx, client, mode, l)
					if err != nil {
						t.Fatalf("%s %s %s: %v", p.Name, client, mode, err)
					}
					t.Logf("round %d %s %s %s: %d msgs in %v, run took %v", r+1, p.Name, client, mode, res.Load.Received, res.Load.Elapsed.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
					checkRun(t, p, client, mode, l, res)
					row.runs[mode] = append(row.runs[mode], res)
				}
			}
		}
	}

	conns := 1000
	if quick {
		conns = 50
	}
	idle := map[Mode][]IdleResult{}
	for r := range n {
		for _, mode := range rotated([]Mode{ModeOff, ModeOn}, r) {
			res, err := MeasureIdle(mode, conns)
			if err != nil {
				t.Fatalf("idle %s: %v", mode, err)
			}
			if want := map[Mode]uint64{ModeOff: 0, ModeOn: uint64(conns + 32)}[mode]; res.Compressed != want {
				t.Errorf("idle, compression %s: %d connections negotiated permessage-deflate, want %d", mode, res.Compressed, want)
			}
			idle[mode] = append(idle[mode], res)
		}
	}
	if t.Failed() {
		return
	}
	t.Log("\n" + e2eTable(rows, n, quick) + idleLine(idle[ModeOff], idle[ModeOn], conns))
}

// rotated returns the order of modes in round r: each round starts one
// further along.
func rotated(modes []Mode, r int) []Mode {
	k := r % len(modes)
	return append(append([]Mode(nil), modes[k:]...), modes[:k]...)
}

// takesOverContext reports whether a Sec-WebSocket-Extensions answer
// lets the server keep its context: permessage-deflate without
// server_no_context_takeover.
func takesOverContext(ext string) bool {
	return strings.Contains(ext, "permessage-deflate") && !strings.Contains(ext, "server_no_context_takeover")
}

// checkRun asserts what does not depend on the machine's speed.
func checkRun(t *testing.T, p Payload, client string, mode Mode, l Load, res E2EResult) {
	t.Helper()
	name := fmt.Sprintf("%s %s %s", p.Name, client, mode)
	want := l.Publishers * l.Messages
	lr := res.Load
	if lr.Sent != want || lr.Received != want || lr.Corrupt != 0 || lr.Duplicates != 0 {
		t.Errorf("%s: sent %d, received %d intact, %d corrupt, %d duplicates; want %d, %d, 0, 0", name, lr.Sent, lr.Received, lr.Corrupt, lr.Duplicates, want, want)
	}
	if res.Server.Dropped != 0 {
		t.Errorf("%s: mochi dropped %d messages", name, res.Server.Dropped)
	}
	conns := l.Publishers + 1
	if res.Server.Conns != conns || len(lr.Extensions) != conns {
		t.Errorf("%s: the broker accepted %d connections and the clients report %d handshakes, want %d", name, res.Server.Conns, len(lr.Extensions), conns)
	}
	// Only ws (MQTT.js) lets the server keep its context: gorilla offers
	// server_no_context_takeover, which the server honors.
	wantTakeover := mode == ModeHistory && client == ClientNode
	for _, e := range lr.Extensions {
		if strings.Contains(e, "permessage-deflate") != mode.Compresses() || takesOverContext(e) != wantTakeover {
			t.Errorf("%s: a client negotiated extensions %q", name, e)
		}
	}
	if wantComp := map[bool]uint64{false: 0, true: uint64(conns)}[mode.Compresses()]; res.Server.Compressed != wantComp {
		t.Errorf("%s: %d connections negotiated permessage-deflate, want %d", name, res.Server.Compressed, wantComp)
	}
	// Every message crosses the wire twice, from a publisher and to the
	// subscriber; the messages of a series are of one size.
	payload := 2 * uint64(len(p.Data)) * uint64(want)
	if !mode.Compresses() && res.Server.Wire() < payload {
		t.Errorf("%s: %d bytes on the wire, under the %d bytes of payload that crossed it", name, res.Server.Wire(), payload)
	}
	if mode.Compresses() && strings.HasPrefix(p.Name, "json") {
		// Every delivery to the subscriber goes out compressed (mochi
		// may write several in one message).
		delivered := uint64(len(p.Data)) * uint64(want)
		if res.Server.CompressedBytesOut < delivered {
			t.Errorf("%s: %d MQTT bytes went out compressed, want at least the %d bytes of payload delivered", name, res.Server.CompressedBytesOut, delivered)
		}
		// The server's own direction: what it sent, handshakes and
		// CONNACKs included, is under the payload it delivered. (Both
		// directions together are not a sound bound: ws sends messages
		// under 1 KiB as they are, so with MQTT.js only the deliveries
		// shrink, and the total came within 0.3 % of the payload once.)
		if res.Server.WireOut >= delivered {
			t.Errorf("%s: %d bytes sent on the wire, not under the %d bytes of payload delivered", name, res.Server.WireOut, delivered)
		}
	}
}

// e2eTable formats the medians of rows as a Markdown table.
func e2eTable(rows []*e2eRow, rounds int, quick bool) string {
	var out strings.Builder
	mode := "full"
	if quick {
		mode = "quick (harness check, few messages: not a measurement)"
	}
	fmt.Fprintf(&out, "end to end through mochi-mqtt behind mqttws.Handler, QoS 1, medians of %d round(s), %s; modes off / on / on+history (History %d):\n\n", rounds, mode, HistoryBytes)
	out.WriteString("| payload | client | msgs | wire B/msg off | on | on+history | off/on | off/on+history | broker CPU µs/msg off | on | on+history | broker syscalls/msg off | on | on+history | client CPU µs/msg off | on | on+history | msgs/s off | on | on+history | lost off / on / on+history | context takeover (on+history) |\n")
	out.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		off, on, hist := r.runs[ModeOff], r.runs[ModeOn], r.runs[ModeHistory]
		three := func(f func(E2EResult) float64, format string) string {
			return fmt.Sprintf(format+" | "+format+" | "+format, medianOf(off, f), medianOf(on, f), medianOf(hist, f))
		}
		wOff, wOn, wHist := medianOf(off, E2EResult.WirePerMsg), medianOf(on, E2EResult.WirePerMsg), medianOf(hist, E2EResult.WirePerMsg)
		last := hist[len(hist)-1]
		takeover := 0
		for _, e := range last.Load.Extensions {
			if takesOverContext(e) {
				takeover++
			}
		}
		fmt.Fprintf(&out, "| %s | %s | %d | %.0f | %.0f | %.0f | %.2f× | %.2f× | %s | %s | %s | %s | %.0f / %.0f / %.0f | %d of %d connections |\n",
			r.payload, r.client, last.Load.Sent, wOff, wOn, wHist, wOff/wOn, wOff/wHist,
			three(cpuUS, "%.1f"), three(E2EResult.SyscallsPerMsg, "%.2f"), three(clientCPUUS, "%.1f"), three(perSecond, "%.0f"),
			maxOf(off, lost), maxOf(on, lost), maxOf(hist, lost), takeover, len(last.Load.Extensions))
	}
	return out.String()
}

func idleLine(off, on []IdleResult, conns int) string {
	hsOff, hsOn := medianOf(off, func(r IdleResult) float64 { return r.HeapStack }), medianOf(on, func(r IdleResult) float64 { return r.HeapStack })
	rssOff, rssOn := medianOf(off, func(r IdleResult) float64 { return r.RSS }), medianOf(on, func(r IdleResult) float64 { return r.RSS })
	return fmt.Sprintf("\nidle MQTT connections through mochi (%d, gorilla clients offering permessage-deflate), broker memory per connection:\n"+
		"  Go heap + stacks: off %.0f B, on %.0f B, difference %+.0f B\n  RSS: off %.0f B, on %.0f B, difference %+.0f B\n",
		conns, hsOff, hsOn, hsOn-hsOff, rssOff, rssOn, rssOn-rssOff)
}

func cpuUS(r E2EResult) float64       { return us(r.CPUPerMsg()) }
func clientCPUUS(r E2EResult) float64 { return us(r.ClientCPUPerMsg()) }
func perSecond(r E2EResult) float64   { return r.Load.PerSecond() }
func lost(r E2EResult) float64        { return float64(r.Load.Lost()) }

// medianOf returns the median of f over rs.
func medianOf[T any](rs []T, f func(T) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v) == 0 {
		return 0
	}
	return v[len(v)/2]
}

// maxOf returns the largest f over rs.
func maxOf[T any](rs []T, f func(T) float64) float64 {
	m := 0.0
	for _, r := range rs {
		m = max(m, f(r))
	}
	return m
}

// TestKernelCountsWhatACountingConnCounts checks the broker's bytes on the
// wire, read from TCP_INFO, against a counting net.Conn wrapper around the
// same connections: with every message delivered and the connections
// still open, both see every byte of the handshakes and frames, each way.
func TestKernelCountsWhatACountingConnCounts(t *testing.T) {
	if err := CheckNode(); err != nil {
		t.Fatal(err)
	}
	var series [][]byte
	for seed := range uint64(8) {
		series = append(series, Telemetry(10<<10, seed+1))
	}
	for _, client := range []string{ClientPaho, ClientNode} {
		for _, mode := range Modes() {
			l := e2eLoad(series, true)
			res, err := MeasureEndToEnd(context.Background(), client, mode, l, BrokerWrapEnv+"=1")
			if err != nil {
				t.Fatalf("%s %s: %v", client, mode, err)
			}
			s := res.Server
			if s.WireIn != s.WrapIn || s.WireOut != s.WrapOut || s.WireIn == 0 || s.WireOut == 0 {
				t.Errorf("%s %s: TCP_INFO counted %d in, %d out; the wrapper %d in, %d out", client, mode, s.WireIn, s.WireOut, s.WrapIn, s.WrapOut)
			}
		}
	}
}
