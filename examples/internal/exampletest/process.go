package exampletest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mqttws/mqttws/internal/testbroker"
)

// Bounds on a child process's start and stop.
const (
	StartTimeout = 30 * time.Second
	StopTimeout  = 15 * time.Second
)

// Process is an example program running as a child process.
type Process struct {
	// Line is the first line it printed on stdout, once serving.
	Line string
	// Addr is the host:port of the first URL in Line.
	Addr string

	cmd    *exec.Cmd
	stdout lineWriter
	stderr testbroker.LockedBuffer
	exited chan struct{}
	err    error // cmd.Wait's, once exited is closed
}

// hostPort finds the host:port of the first URL in a line.
var hostPort = regexp.MustCompile(`://([^/\s]+)`)

// Start runs the program at path with args, waits for its first line on
// stdout, and returns it running. It is killed when the test ends unless it
// was stopped; its stderr is logged if the test failed.
func Start(t testing.TB, path string, args ...string) *Process {
	t.Helper()
	return StartEnv(t, nil, path, args...)
}

// StartEnv is Start with env (NAME=value items) added to the test's
// environment, replacing variables of the same names: "GODEBUG=" clears
// GODEBUG.
func StartEnv(t testing.TB, env []string, path string, args ...string) *Process {
	t.Helper()
	p := &Process{cmd: exec.Command(path, args...), exited: make(chan struct{})}
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...) // the last of a name wins
	}
	p.stdout.first = make(chan string, 1)
	p.cmd.Stdout = &p.stdout
	p.cmd.Stderr = &p.stderr
	p.cmd.SysProcAttr = sysProcAttr()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("%s %s: stderr:\n%s", path, strings.Join(args, " "), tail(p.Stderr()))
		}
	})

	timer := time.NewTimer(StartTimeout)
	defer timer.Stop()
	select {
	case p.Line = <-p.stdout.first:
	case <-p.exited:
		t.Fatalf("%s %s exited before it served: %v\n%s", path, strings.Join(args, " "), p.err, p.Stderr())
	case <-timer.C:
		t.Fatalf("%s %s printed nothing within %v\n%s", path, strings.Join(args, " "), StartTimeout, p.Stderr())
	}
	m := hostPort.FindStringSubmatch(p.Line)
	if m == nil {
		t.Fatalf("%s printed %q, with no URL in it", path, p.Line)
	}
	p.Addr = m[1]
	return p
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Port returns the port of Addr.
func (p *Process) Port() string {
	_, port, _ := strings.Cut(p.Addr, ":")
	return port
}

// Signal sends sig to the program.
func (p *Process) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// WaitLog waits for the program's log to hold want, for at most timeout,
// and fails the test otherwise.
func (p *Process) WaitLog(t testing.TB, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.Stderr(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("the program did not log %q within %v:\n%s", want, timeout, tail(p.Stderr()))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stderr returns what the program logged so far.
func (p *Process) Stderr() string { return p.stderr.String() }

// Terminate sends SIGTERM and waits for the program to exit, for at most
// StopTimeout (then it is killed and the test fails). It returns the time
// from the signal to the exit, and the exit status.
func (p *Process) Terminate(t testing.TB) (time.Duration, int) {
	t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	timer := time.NewTimer(StopTimeout)
	defer timer.Stop()
	select {
	case <-p.exited:
	case <-timer.C:
		_ = p.cmd.Process.Kill()
		<-p.exited
		t.Fatalf("the program did not stop within %v of SIGTERM", StopTimeout)
	}
	took := time.Since(start)
	var exit *exec.ExitError
	switch {
	case p.err == nil:
		return took, 0
	case errors.As(p.err, &exit):
		return took, exit.ExitCode()
	default:
		t.Fatalf("wait: %v", p.err)
		return took, -1
	}
}

// Memory is what /proc/PID/status tells of a process's memory.
type Memory struct {
	RSS, HWM int64 // VmRSS and VmHWM (the peak RSS), in bytes
}

// Memory reads the program's memory use, and fails the test if it cannot.
func (p *Process) Memory(t testing.TB) Memory {
	t.Helper()
	m, err := p.ReadMemory()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// ReadMemory reads the program's memory use from /proc/PID/status.
func (p *Process) ReadMemory() (Memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid()))
	if err != nil {
		return Memory{}, fmt.Errorf("reading the program's memory: %w", err)
	}
	var m Memory
	for line := range strings.Lines(string(b)) {
		name, value, _ := strings.Cut(line, ":")
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		switch {
		case err != nil:
		case name == "VmRSS":
			m.RSS = kb << 10
		case name == "VmHWM":
			m.HWM = kb << 10
		}
	}
	if m.RSS == 0 || m.HWM == 0 {
		return m, fmt.Errorf("no VmRSS or VmHWM in /proc/%d/status", p.Pid())
	}
	return m, nil
}

// OpenFiles counts the program's open file descriptors.
func (p *Process) OpenFiles(t testing.TB) int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.Pid()))
	if err != nil {
		t.Fatalf("counting the program's open files: %v", err)
	}
	return len(fds)
}

// exitTimeout bounds the run of a program expected to exit at once, such
// as on a usage error.
const exitTimeout = 10 * time.Second

// Exit runs the program at path with args to its end, for at most 10s (then
// it is killed, and the status is -1), and returns its exit status and
// stderr.
func Exit(t testing.TB, path string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(path, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	timer := time.AfterFunc(exitTimeout, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	err := cmd.Wait()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, stderr.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), stderr.String()
	default:
		t.Fatalf("%s %s: %v", path, strings.Join(args, " "), err)
		return -1, ""
	}
}

// lineWriter passes the first line written to it on first.
type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	first chan string
	sent  bool
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(b)
	if line, _, ok := strings.Cut(w.buf.String(), "\n"); ok && !w.sent {
		w.sent = true
		w.first <- line
	}
	return len(b), nil
}

// tail returns the last lines of a log.
func tail(s string) string {
	const max = 8 << 10
	if len(s) > max {
		return "…" + s[len(s)-max:]
	}
	return s
}

// metricsURL finds the URL of the metrics in the log of an example run with
// -metrics-listen.
var metricsURL = regexp.MustCompile(`url=(http://[^ ]+/metrics)`)

// MetricsURL returns the URL of the metrics that p logged, waiting for the
// line for at most StartTimeout.
func MetricsURL(t testing.TB, p *Process) string {
	t.Helper()
	deadline := time.Now().Add(StartTimeout)
	for {
		if m := metricsURL.FindStringSubmatch(p.Stderr()); m != nil {
			return m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no metrics URL logged within %v:\n%s", StartTimeout, tail(p.Stderr()))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
