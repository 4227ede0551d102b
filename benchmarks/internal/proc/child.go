package proc

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/mqttws/mqttws/benchmarks/internal/sysinfo"
	"github.com/mqttws/mqttws/benchmarks/internal/targets"
)

// FileLimit is the RLIMIT_NOFILE the runner and its children ask for: the
// proxy holds two descriptors per connection.
const FileLimit = 1 << 17

// Main is the child's main function; args follow Command. It returns the
// exit code.
func Main(args []string) int {
	fs := flag.NewFlagSet(Command, flag.ContinueOnError)
	target := fs.String("target", "", "in-process target to serve")
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	upstream := fs.String("upstream", "", "the proxy's broker address")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if _, err := sysinfo.RaiseFileLimit(FileLimit); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	stop, err := targets.Serve(*target, *listen, *upstream)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	if err := WaitListening(*listen, 10*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fmt.Println(answer(in.Text()))
	}
	return 0
}

// answer runs one command and returns its answer line.
func answer(line string) string {
	cmd, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
	switch cmd {
	case "stats":
		b, err := json.Marshal(stats())
		if err != nil {
			return "error: " + err.Error()
		}
		return string(b)
	case "cpuprofile":
		f, err := os.Create(arg)
		if err != nil {
			return "error: " + err.Error()
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			_ = f.Close()
			return "error: " + err.Error()
		}
		profileFile = f
		return "ok"
	case "heapprofile":
		f, err := os.Create(arg)
		if err != nil {
			return "error: " + err.Error()
		}
		runtime.GC()
		err = pprof.Lookup("heap").WriteTo(f, 0)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "error: " + err.Error()
		}
		return "ok"
	case "goroutineprofile":
		f, err := os.Create(arg)
		if err != nil {
			return "error: " + err.Error()
		}
		err = pprof.Lookup("goroutine").WriteTo(f, 0)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "error: " + err.Error()
		}
		return "ok"
	case "stopprofile":
		pprof.StopCPUProfile()
		if profileFile != nil {
			_ = profileFile.Close()
			profileFile = nil
		}
		return "ok"
	}
	return fmt.Sprintf("error: unknown command %q", cmd)
}

// profileFile is the CPU profile being written, if any.
var profileFile *os.File

// stats collects garbage, returns free memory to the system, and measures.
// It allocates nothing between the collection and the runtime's figures, so
// that they agree with each other; reading RSS comes last.
func stats() Stats {
	samples := memoryClassSamples()
	runtime.GC()
	debug.FreeOSMemory()
	// ReadMemStats flushes the per-P allocation caches, which the memory
	// classes count only when flushed.
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	metrics.Read(samples)
	classes := make(map[string]uint64, len(samples))
	for _, s := range samples {
		classes[s.Name] = s.Value.Uint64()
	}
	rss, _ := sysinfo.ResidentOf(0)
	return Stats{
		RSS:        rss.Total,
		RSSAnon:    rss.Anon,
		RSSFile:    rss.File,
		HeapAlloc:  m.HeapAlloc,
		HeapInuse:  m.HeapInuse,
		StackInuse: m.StackInuse,
		MSpanInuse: m.MSpanInuse,
		GCSys:      m.GCSys,
		OtherSys:   m.OtherSys,
		Sys:        m.Sys,
		Goroutines: runtime.NumGoroutine(),
		Classes:    classes,
	}
}

// memoryClassSamples returns samples for the runtime/metrics memory
// classes, to be read.
func memoryClassSamples() []metrics.Sample {
	var samples []metrics.Sample
	for _, d := range metrics.All() {
		if strings.HasPrefix(d.Name, MemoryClasses) && d.Kind == metrics.KindUint64 {
			samples = append(samples, metrics.Sample{Name: d.Name})
		}
	}
	return samples
}
