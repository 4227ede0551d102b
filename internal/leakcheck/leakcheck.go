// Package leakcheck fails a test binary when goroutines outlive its tests:
// every connection, timer and backend a test starts must be gone once it
// ends. It does what go.uber.org/goleak's VerifyTestMain does, for the root
// module, which keeps its go.mod free of test dependencies so that they never
// reach a user's module graph (the other modules use goleak itself).
package leakcheck

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// settle is how long goroutines get to end after the tests: closing
// connections and timers finish asynchronously.
const settle = 10 * time.Second

// ignored are goroutines the runtime and the testing package own, by the
// function at the top of their stack or the one that created them.
var ignored = []string{
	"testing.(*M).",
	"testing.tRunner",
	"testing.runFuzzing",
	"testing.(*F).",
	"os/signal.signal_recv",
	"os/signal.loop",
	"runtime.ensureSigM",
	"runtime/trace.",
	"created by runtime.gc",
	"runtime.goexit",
}

// Main runs the tests of m, then fails the binary when goroutines other
// than the runtime's and the testing package's are still running.
func Main(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := Leaked(settle); leaked != "" {
			fmt.Fprintf(os.Stderr, "leakcheck: goroutines outlived the tests:\n\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// Leaked waits up to wait for every goroutine but the caller and the
// ignored ones to end, and returns the stacks of those left ("" if none).
func Leaked(wait time.Duration) string {
	deadline := time.Now().Add(wait)
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		leaked := others()
		if len(leaked) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(delay)
	}
}

// Stacks returns the stack of every goroutine, the caller's first.
func Stacks() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	return strings.Split(string(buf), "\n\n")
}

// others returns the stacks of the goroutines other than the caller's and
// the ignored ones.
func others() []string {
	stacks := Stacks()
	var leaked []string
	for _, s := range stacks[1:] { // the first is the caller's
		if !isIgnored(s) {
			leaked = append(leaked, s)
		}
	}
	return leaked
}

func isIgnored(stack string) bool {
	lines := strings.Split(stack, "\n")
	if len(lines) < 2 {
		return true
	}
	top := lines[1]
	created := ""
	for _, l := range lines {
		if strings.HasPrefix(l, "created by ") {
			created = l
		}
	}
	creator := strings.TrimPrefix(created, "created by ")
	for _, ig := range ignored {
		if strings.HasPrefix(top, ig) || strings.HasPrefix(creator, ig) || strings.HasPrefix(created, ig) {
			return true
		}
	}
	return false
}
