package compression

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"
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

// e2eLoad returns the load of one end-to-end run of p: 4 publishers (2
// when quick) and about 32 MiB of payload in all, 2000 to 20000 messages.
func e2eLoad(p []byte, quick bool) Load {
	if quick {
		return Load{Payload: p, Publishers: 2, Messages: 20, Window: 16, Timeout: 20 * time.Second}
	}
	const publishers = 4
	total := min(20000, max(2000, (32<<20)/len(p)))
	return Load{Payload: p, Publishers: publishers, Messages: total / publishers, Window: 16, Timeout: 60 * time.Second}
}

// e2eRow is the rounds of one payload and client, compression off and on.
type e2eRow struct {
	payload, client string
	off, on         []E2EResult
}

// TestEndToEndReport prints, for each payload and client stack,
// compression on against off through mochi-mqtt behind an mqttws.Handler
// in a broker process of its own: bytes on the wire per message (both
// ways, counted by the broker's kernel), the broker's CPU per message,
// messages per second and messages lost, the medians of interleaved
// rounds; then the broker's memory per idle connection. Without -report it
// checks the harness with a few messages: every message arrives intact,
// every connection negotiated permessage-deflate when the server has it
// on and none when off, and JSON takes fewer bytes on the wire with it:
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
			row := &e2eRow{payload: p.Name, client: client}
			rows = append(rows, row)
			l := e2eLoad(p.Data, quick)
			for r := range n {
				for _, on := range interleaved(r) {
					start := time.Now()
					res, err := MeasureEndToEnd(ctx, client, on, l)
					if err != nil {
						t.Fatalf("%s %s compress=%v: %v", p.Name, client, on, err)
					}
					t.Logf("round %d %s %s compress=%v: %d msgs in %v, run took %v", r+1, p.Name, client, on, res.Load.Received, res.Load.Elapsed.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
					checkRun(t, p, client, on, l, res)
					if on {
						row.on = append(row.on, res)
					} else {
						row.off = append(row.off, res)
					}
				}
			}
		}
	}

	conns := 1000
	if quick {
		conns = 50
	}
	var idleOff, idleOn []IdleResult
	for r := range n {
		for _, on := range interleaved(r) {
			res, err := MeasureIdle(on, conns)
			if err != nil {
				t.Fatalf("idle compress=%v: %v", on, err)
			}
			if want := uint64(0); !on && res.Compressed != want {
				t.Errorf("idle, compression off: %d connections negotiated permessage-deflate, want 0", res.Compressed)
			}
			if want := uint64(conns + 32); on && res.Compressed != want {
				t.Errorf("idle, compression on: %d connections negotiated permessage-deflate, want %d", res.Compressed, want)
			}
			if on {
				idleOn = append(idleOn, res)
			} else {
				idleOff = append(idleOff, res)
			}
		}
	}
	if t.Failed() {
		return
	}
	t.Log("\n" + e2eTable(rows, n, quick) + idleLine(idleOff, idleOn, conns))
}

// interleaved returns the order of round r: off first in even rounds, on
// first in odd ones.
func interleaved(r int) []bool {
	if r%2 == 1 {
		return []bool{true, false}
	}
	return []bool{false, true}
}

// checkRun asserts what does not depend on the machine's speed.
func checkRun(t *testing.T, p Payload, client string, on bool, l Load, res E2EResult) {
	t.Helper()
	name := fmt.Sprintf("%s %s compress=%v", p.Name, client, on)
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
	for _, e := range lr.Extensions {
		if got := strings.Contains(e, "permessage-deflate"); got != on {
			t.Errorf("%s: a client negotiated extensions %q", name, e)
		}
	}
	if wantComp := map[bool]uint64{false: 0, true: uint64(conns)}[on]; res.Server.Compressed != wantComp {
		t.Errorf("%s: %d connections negotiated permessage-deflate, want %d", name, res.Server.Compressed, wantComp)
	}
	// Every message crosses the wire twice, from a publisher and to the
	// subscriber.
	payload := 2 * uint64(len(p.Data)) * uint64(want)
	if !on && res.Server.Wire() < payload {
		t.Errorf("%s: %d bytes on the wire, under the %d bytes of payload that crossed it", name, res.Server.Wire(), payload)
	}
	if on && strings.HasPrefix(p.Name, "json") {
		// Every delivery to the subscriber goes out compressed (mochi
		// may write several in one message).
		if delivered := uint64(len(p.Data)) * uint64(want); res.Server.CompressedBytesOut < delivered {
			t.Errorf("%s: %d MQTT bytes went out compressed, want at least the %d bytes of payload delivered", name, res.Server.CompressedBytesOut, delivered)
		}
		if res.Server.Wire() >= payload {
			t.Errorf("%s: %d bytes on the wire, not under the %d bytes of payload", name, res.Server.Wire(), payload)
		}
	}
}

// e2eTable formats the medians of rows.
func e2eTable(rows []*e2eRow, rounds int, quick bool) string {
	var out strings.Builder
	mode := "full"
	if quick {
		mode = "quick (harness check, few messages: not a measurement)"
	}
	fmt.Fprintf(&out, "end to end through mochi-mqtt behind mqttws.Handler, QoS 1, medians of %d round(s), %s:\n", rounds, mode)
	tw := tabwriter.NewWriter(&out, 2, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "payload\tclient\tmsgs\twire B/msg off\ton\toff/on\tserver CPU µs/msg off\ton\ton/off\tsyscalls/msg off\ton\tclient CPU µs/msg off\ton\tmsgs/s off\ton\ton/off\tlost off\ton\tcompressed in/out\t")
	for _, r := range rows {
		wOff, wOn := medianOf(r.off, E2EResult.WirePerMsg), medianOf(r.on, E2EResult.WirePerMsg)
		cOff, cOn := medianOf(r.off, cpuUS), medianOf(r.on, cpuUS)
		scOff, scOn := medianOf(r.off, E2EResult.SyscallsPerMsg), medianOf(r.on, E2EResult.SyscallsPerMsg)
		ccOff, ccOn := medianOf(r.off, clientCPUUS), medianOf(r.on, clientCPUUS)
		sOff, sOn := medianOf(r.off, perSecond), medianOf(r.on, perSecond)
		lostOff, lostOn := maxOf(r.off, lost), maxOf(r.on, lost)
		last := r.on[len(r.on)-1]
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.0f\t%.2f×\t%.1f\t%.1f\t%.2f×\t%.2f\t%.2f\t%.1f\t%.1f\t%.0f\t%.0f\t%.2f×\t%.0f\t%.0f\t%d/%d\t\n",
			r.payload, r.client, last.Load.Sent, wOff, wOn, wOff/wOn, cOff, cOn, cOn/cOff, scOff, scOn, ccOff, ccOn, sOff, sOn, sOn/sOff,
			lostOff, lostOn, last.Server.CompressedMessagesIn, last.Server.CompressedMessagesOut)
	}
	_ = tw.Flush()
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
	for _, client := range []string{ClientPaho, ClientNode} {
		for _, on := range []bool{false, true} {
			l := e2eLoad(Telemetry(10<<10, 2), true)
			res, err := MeasureEndToEnd(context.Background(), client, on, l, BrokerWrapEnv+"=1")
			if err != nil {
				t.Fatalf("%s compress=%v: %v", client, on, err)
			}
			s := res.Server
			if s.WireIn != s.WrapIn || s.WireOut != s.WrapOut || s.WireIn == 0 || s.WireOut == 0 {
				t.Errorf("%s compress=%v: TCP_INFO counted %d in, %d out; the wrapper %d in, %d out", client, on, s.WireIn, s.WireOut, s.WrapIn, s.WrapOut)
			}
		}
	}
}
