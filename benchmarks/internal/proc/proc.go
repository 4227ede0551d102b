// Package proc runs an in-process target (package targets) in a child
// process of its own, so that its memory is measured alone: the runner
// starts its own executable with "serve" as first argument, and talks to it
// over the child's standard input and output, one line each way.
//
// Commands, one a line: "stats" (answered with a JSON Stats line),
// "cpuprofile PATH" and "stopprofile", "heapprofile PATH" and
// "goroutineprofile PATH" (answered "ok"). Closing the child's
// standard input stops it.
package proc

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Command is the first argument that makes the runner's executable a
// target server.
const Command = "serve"

// Stats is the child's memory after a full garbage collection, with unused
// memory returned to the system so that RSS counts what is kept.
type Stats struct {
	RSS        int64  `json:"rss"`         // VmRSS, bytes
	RSSAnon    int64  `json:"rss_anon"`    // RssAnon: anonymous pages, bytes
	RSSFile    int64  `json:"rss_file"`    // RssFile: file-backed pages (the executable), bytes
	HeapAlloc  uint64 `json:"heap_alloc"`  // live heap objects, bytes
	HeapInuse  uint64 `json:"heap_inuse"`  // in-use heap spans; HeapInuse-HeapAlloc is fragmentation
	StackInuse uint64 `json:"stack_inuse"` // goroutine stacks, bytes
	MSpanInuse uint64 `json:"mspan_inuse"` // span descriptors in use, bytes
	GCSys      uint64 `json:"gc_sys"`      // garbage-collector metadata, bytes
	OtherSys   uint64 `json:"other_sys"`   // other runtime allocations (netpoll descriptors among them), bytes
	Sys        uint64 `json:"sys"`         // memory obtained from the system, bytes
	Goroutines int    `json:"goroutines"`

	// Classes holds the runtime/metrics "/memory/classes/..." values in
	// bytes, keyed by metric name: an exact partition of Sys.
	Classes map[string]uint64 `json:"classes"`
}

// Breakdown partitions the memory the Go runtime has mapped, minus what it
// has returned to the system, from the runtime/metrics memory classes.
// Its parts are in bytes; a difference of two may be negative.
type Breakdown struct {
	HeapLive   int64 // /memory/classes/heap/objects: live and not yet swept heap objects
	HeapUnused int64 // /memory/classes/heap/unused: free slots in in-use spans (fragmentation)
	HeapFree   int64 // /memory/classes/heap/free: free spans not returned to the system
	Stacks     int64 // /memory/classes/heap/stacks: goroutine stacks (StackInuse)
	OSStacks   int64 // /memory/classes/os-stacks: thread stacks from the OS (cgo), usually 0
	MSpan      int64 // /memory/classes/metadata/mspan/...: span descriptors, used and free
	GCMeta     int64 // /memory/classes/metadata/other and mcache/...: GC and allocator metadata
	Other      int64 // /memory/classes/other and profiling/buckets: persistent allocations (netpoll descriptors, ...)
}

// Go returns the sum of the parts: the runtime's memory less what it has
// released, an upper bound on its share of RSS (mapped pages the process
// has not touched are not resident).
func (b Breakdown) Go() int64 {
	return b.HeapLive + b.HeapUnused + b.HeapFree + b.Stacks + b.OSStacks + b.MSpan + b.GCMeta + b.Other
}

// Sub returns b - c, part by part.
func (b Breakdown) Sub(c Breakdown) Breakdown {
	return Breakdown{
		HeapLive:   b.HeapLive - c.HeapLive,
		HeapUnused: b.HeapUnused - c.HeapUnused,
		HeapFree:   b.HeapFree - c.HeapFree,
		Stacks:     b.Stacks - c.Stacks,
		OSStacks:   b.OSStacks - c.OSStacks,
		MSpan:      b.MSpan - c.MSpan,
		GCMeta:     b.GCMeta - c.GCMeta,
		Other:      b.Other - c.Other,
	}
}

// MemoryClasses is the prefix of the runtime/metrics memory classes.
const MemoryClasses = "/memory/classes/"

// Breakdown sorts s.Classes into parts. Classes it does not know, from a
// later Go release, count as Other, so that the parts still add up to the
// total less the released heap.
func (s Stats) Breakdown() Breakdown {
	var b Breakdown
	for name, v := range s.Classes {
		n := int64(v)
		switch strings.TrimPrefix(name, MemoryClasses) {
		case "total:bytes", "heap/released:bytes":
		case "heap/objects:bytes":
			b.HeapLive += n
		case "heap/unused:bytes":
			b.HeapUnused += n
		case "heap/free:bytes":
			b.HeapFree += n
		case "heap/stacks:bytes":
			b.Stacks += n
		case "os-stacks:bytes":
			b.OSStacks += n
		case "metadata/mspan/inuse:bytes", "metadata/mspan/free:bytes":
			b.MSpan += n
		case "metadata/other:bytes", "metadata/mcache/inuse:bytes", "metadata/mcache/free:bytes":
			b.GCMeta += n
		default:
			b.Other += n
		}
	}
	return b
}

// Proc is a running child target.
type Proc struct {
	Target string
	Addr   string // where it listens, "127.0.0.1:port"

	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	stderr *tail
	mu     sync.Mutex // one command at a time
}

// Start starts target in a child process listening on addr (upstream is the
// proxy's broker) and returns once it accepts connections.
func Start(target, addr, upstream string) (*Proc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, Command, "-target", target, "-listen", addr, "-upstream", upstream)
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p := &Proc{Target: target, Addr: addr, cmd: cmd, in: in, out: bufio.NewReader(out), stderr: &tail{}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("proc: start %s: %w", target, err)
	}
	line, err := p.readLine(30 * time.Second)
	if err != nil || line != "ready" {
		_ = p.Stop()
		return nil, fmt.Errorf("proc: %s did not start (%q, %v): %s", target, line, err, p.stderr)
	}
	return p, nil
}

// PID returns the child's process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Stats asks the child for its memory figures.
func (p *Proc) Stats() (Stats, error) {
	var s Stats
	line, err := p.call("stats")
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal([]byte(line), &s); err != nil {
		return s, fmt.Errorf("proc: %s stats %q: %w", p.Target, line, err)
	}
	return s, nil
}

// StartCPUProfile makes the child write a CPU profile to path until
// StopCPUProfile.
func (p *Proc) StartCPUProfile(path string) error { return p.expectOK("cpuprofile " + path) }

// StopCPUProfile ends the child's CPU profile.
func (p *Proc) StopCPUProfile() error { return p.expectOK("stopprofile") }

// WriteHeapProfile makes the child write a heap profile, after a garbage
// collection, to path.
func (p *Proc) WriteHeapProfile(path string) error { return p.expectOK("heapprofile " + path) }

// WriteGoroutineProfile makes the child write a goroutine profile to path.
func (p *Proc) WriteGoroutineProfile(path string) error {
	return p.expectOK("goroutineprofile " + path)
}

func (p *Proc) expectOK(cmd string) error {
	line, err := p.call(cmd)
	if err != nil {
		return err
	}
	if line != "ok" {
		return fmt.Errorf("proc: %s %q: %s", p.Target, cmd, line)
	}
	return nil
}

// call sends one command and returns the answer line.
func (p *Proc) call(cmd string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := fmt.Fprintln(p.in, cmd); err != nil {
		return "", fmt.Errorf("proc: %s: %w: %s", p.Target, err, p.stderr)
	}
	return p.readLine(60 * time.Second)
}

// readLine reads one line of the child's output within timeout.
func (p *Proc) readLine(timeout time.Duration) (string, error) {
	line, err := ReadLine(p.out, timeout)
	if err != nil {
		return "", fmt.Errorf("proc: %s: %w", p.Target, err)
	}
	return line, nil
}

// ReadLine reads one line from r, without its surrounding space, within
// timeout. After a timeout the read goes on in the background: r must not
// be read again.
func ReadLine(r *bufio.Reader, timeout time.Duration) (string, error) {
	type result struct {
		line string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		line, err := r.ReadString('\n')
		ch <- result{strings.TrimSpace(line), err}
	}()
	select {
	case res := <-ch:
		return res.line, res.err
	case <-time.After(timeout):
		return "", fmt.Errorf("no answer within %v", timeout)
	}
}

// Stop closes the child's input, which makes it shut down, and kills it if
// it is still there after a few seconds.
func (p *Proc) Stop() error {
	_ = p.in.Close()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		return errors.Join(errors.New("proc: "+p.Target+" killed after 10s"), <-done)
	}
}

// WaitListening waits until addr accepts TCP connections.
func WaitListening(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("proc: %s not listening after %v: %w", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FreeAddr returns a loopback address with a port free at the time of the
// call.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// tail keeps the last few KiB written to it: a child's standard error, shown
// when it fails.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

const tailSize = 4 << 10

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailSize {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailSize:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}
