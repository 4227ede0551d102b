package compression

import (
	"flag"
	"fmt"
	"strings"
	"testing"
	"text/tabwriter"

	"github.com/mqttws/mqttws"
)

var (
	report = flag.Bool("report", false, "TestReport measures for real (about a minute) instead of checking the harness")
	rounds = flag.Int("rounds", 3, "TestReport: rounds of each measurement, on and off interleaved; the median is kept")
)

// messagesFor returns how many messages of p a measurement sends: about
// 64 MiB, at least 2000.
func messagesFor(p []byte, quick bool) int {
	if quick {
		return 50
	}
	return max(2000, (64<<20)/len(p))
}

// TestReport prints, for each payload, compression on against off: bytes
// on the wire per message, process CPU per message and messages per second
// for server writes (the server compresses) and reads (it inflates), the
// medians of interleaved rounds; then memory per idle connection, and
// compress/flate beside klauspost/compress/flate. Without -report it only
// checks the harness, quickly:
//
//	go test -run TestReport -v ./compression -args -report
func TestReport(t *testing.T) {
	quick := !*report
	n := *rounds
	if quick {
		n = 1
		bt := flag.Lookup("test.benchtime").Value
		old := bt.String()
		if err := bt.Set("20x"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = bt.Set(old) })
	}
	var out strings.Builder
	tw := tabwriter.NewWriter(&out, 2, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "payload\tdir\twire B/msg off\ton\tratio\tCPU µs/msg off\ton\tmsgs/s off\ton\ton/off\tcompressed msgs\t")
	for _, p := range Payloads() {
		for _, dir := range []string{"write", "write+history", "read"} {
			// Off is compression off; on, the default options, or a
			// history of 1 KiB for write+history.
			measure := func(on bool, series [][]byte, msgs int) (Result, error) {
				var opts *mqttws.CompressionOptions
				switch {
				case on && dir == "write+history":
					opts = &mqttws.CompressionOptions{History: 1 << 10}
				case on:
					opts = &mqttws.CompressionOptions{}
				}
				return MeasureWriteSeries(opts, series, msgs)
			}
			if dir == "read" {
				measure = MeasureReadSeries
			}
			msgs := messagesFor(p.Data, quick)
			var offs, ons []Result
			for r := range n {
				order := []bool{false, true}
				if r%2 == 1 {
					order = []bool{true, false}
				}
				for _, on := range order {
					res, err := measure(on, p.Series, msgs)
					if err != nil {
						t.Fatalf("%s %s compress=%v: %v", p.Name, dir, on, err)
					}
					if on {
						ons = append(ons, res)
					} else {
						offs = append(offs, res)
					}
				}
			}
			off, on := median(offs), median(ons)
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%.2f×\t%.1f\t%.1f\t%.0f\t%.0f\t%.2f×\t%d\t\n",
				p.Name, dir, off.WirePerMsg(), on.WirePerMsg(), off.WirePerMsg()/on.WirePerMsg(),
				us(off.CPUPerMsg()), us(on.CPUPerMsg()), off.PerSecond(), on.PerSecond(), on.PerSecond()/off.PerSecond(), on.Compressed)
		}
	}
	_ = tw.Flush()

	conns := 2000
	if quick {
		conns = 50
	}
	idleOff, err := IdleMemory(false, conns)
	if err != nil {
		t.Fatal(err)
	}
	idleOn, err := IdleMemory(true, conns)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&out, "\nidle connections (%d, Go heap + stacks per connection): off %.0f B, on %.0f B, difference %+.0f B\n", conns, idleOff, idleOn, idleOn-idleOff)

	fmt.Fprintf(&out, "\nDEFLATE side by side (level 1, reset per message, sync flush):\n")
	tw = tabwriter.NewWriter(&out, 2, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "payload\tlibrary\tdeflate µs\tMB/s\tout B\tallocs\tinflate µs\tMB/s\tallocs\t")
	for _, p := range Payloads() {
		for _, f := range []Flate{Std, Klauspost} {
			d, size := Deflate(f, p.Data)
			i := Inflate(f, p.Data)
			fmt.Fprintf(tw, "%s\t%s\t%.2f\t%.0f\t%d\t%d\t%.2f\t%.0f\t%d\t\n", p.Name, f,
				float64(d.NsPerOp())/1e3, mbps(d), size, d.AllocsPerOp(), float64(i.NsPerOp())/1e3, mbps(i), i.AllocsPerOp())
		}
	}
	_ = tw.Flush()
	for _, f := range []Flate{Std, Klauspost} {
		fmt.Fprintf(&out, "%s: a level-1 compressor takes %d KiB, a decompressor %d KiB\n", f, WriterSize(f)>>10, ReaderSize(f)>>10)
	}
	t.Log("\n" + out.String())
}

func us(d interface{ Nanoseconds() int64 }) float64 { return float64(d.Nanoseconds()) / 1e3 }

func mbps(r testing.BenchmarkResult) float64 {
	if r.T <= 0 {
		return 0
	}
	return float64(r.Bytes) * float64(r.N) / r.T.Seconds() / 1e6
}

// median returns the result of median throughput.
func median(rs []Result) Result {
	for i := range rs {
		for j := i + 1; j < len(rs); j++ {
			if rs[j].PerSecond() < rs[i].PerSecond() {
				rs[i], rs[j] = rs[j], rs[i]
			}
		}
	}
	return rs[len(rs)/2]
}

// BenchmarkWrite measures server Writes, compression off and on.
func BenchmarkWrite(b *testing.B) {
	for _, p := range Payloads() {
		for _, on := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/compress=%v", p.Name, on), func(b *testing.B) {
				b.SetBytes(int64(len(p.Data)))
				r, err := MeasureWrites(on, p.Data, b.N)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(r.WirePerMsg(), "wireB/msg")
				b.ReportMetric(us(r.CPUPerMsg()), "cpuµs/msg")
			})
		}
	}
}

// BenchmarkRead measures server Reads, compression off and on.
func BenchmarkRead(b *testing.B) {
	for _, p := range Payloads() {
		for _, on := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/compress=%v", p.Name, on), func(b *testing.B) {
				b.SetBytes(int64(len(p.Data)))
				r, err := MeasureReads(on, p.Data, b.N)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(r.WirePerMsg(), "wireB/msg")
				b.ReportMetric(us(r.CPUPerMsg()), "cpuµs/msg")
			})
		}
	}
}
