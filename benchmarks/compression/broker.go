package compression

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"golang.org/x/sys/unix"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/backend/mochi"
	"github.com/mqttws/mqttws/benchmarks/internal/proc"
	"github.com/mqttws/mqttws/benchmarks/internal/sysinfo"
)

// Mode is a broker's compression setting.
type Mode string

// The modes measured.
const (
	ModeOff     Mode = "off"        // Handler.Compression nil
	ModeOn      Mode = "on"         // CompressionOptions{}: no context takeover
	ModeHistory Mode = "on+history" // CompressionOptions{History: HistoryBytes}
)

// Modes returns the modes measured, in order.
func Modes() []Mode { return []Mode{ModeOff, ModeOn, ModeHistory} }

// HistoryBytes is CompressionOptions.History in ModeHistory, as the
// examples set it.
const HistoryBytes = 1024

// Compresses reports whether the broker offers permessage-deflate.
func (m Mode) Compresses() bool { return m != ModeOff }

// options returns the broker's Handler.Compression in mode m.
func (m Mode) options() (*mqttws.CompressionOptions, error) {
	switch m {
	case ModeOff:
		return nil, nil
	case ModeOn:
		return &mqttws.CompressionOptions{}, nil
	case ModeHistory:
		return &mqttws.CompressionOptions{History: HistoryBytes}, nil
	}
	return nil, fmt.Errorf("compression: unknown mode %q: want %q, %q or %q", string(m), ModeOff, ModeOn, ModeHistory)
}

// BrokerEnv, set to a Mode ("off", "on" or "on+history") in the
// environment of this package's test binary, makes it a broker (TestMain
// calls BrokerMain): mochi-mqtt behind an mqttws.Handler with compression
// in that mode, as
// internal/targets builds the "mqttws+mochi" target (targets.Serve takes
// no handler options, so the same few lines are here with Compression
// set). The broker runs in a process of its own so that its CPU time and
// memory are measured alone, without the clients'.
const BrokerEnv = "MQTTWS_COMPRESSION_BROKER"

// BrokerProfileEnv, set to a directory in the environment of the tests,
// makes every broker write a CPU profile of its whole life there, named
// broker-MODE-PID.prof.
const BrokerProfileEnv = "MQTTWS_COMPRESSION_PROFILE"

// BrokerWrapEnv, set to "1" beside BrokerEnv, makes the broker also count
// bytes the way a counting net.Conn wrapper does (BrokerStats.WrapIn and
// WrapOut), handing http.Server the wrapper: the check that the kernel's
// counts are the bytes the server read and wrote. It costs mqttws its
// writev, so it is off in measurements.
const BrokerWrapEnv = "MQTTWS_COMPRESSION_WRAP"

// brokerPath is the HTTP path the broker serves, as in internal/targets.
const brokerPath = "/mqtt"

// BrokerStats is what the broker process reports about itself.
type BrokerStats struct {
	CPU      time.Duration `json:"cpu"`      // user and system time of the process
	Syscalls int64         `json:"syscalls"` // read and write system calls (/proc/self/io)
	WireIn   uint64        `json:"wire_in"`  // TCP payload bytes received: HTTP handshakes and frames
	WireOut  uint64        `json:"wire_out"` // TCP payload bytes sent, retransmissions not counted
	Conns    int           `json:"conns"`    // connections accepted
	// WrapIn and WrapOut are the bytes read from and written to the
	// connections through a counting wrapper, with BrokerWrapEnv only.
	WrapIn  uint64 `json:"wrap_in,omitempty"`
	WrapOut uint64 `json:"wrap_out,omitempty"`
	// Dropped counts the messages mochi dropped: a client's queue of
	// pending writes full, or its QoS 1 and 2 messages in flight at
	// mochi's limit (Info.MessagesDropped and Info.InflightDropped).
	Dropped int64 `json:"dropped"`
	// Compressed and the other counts are mqttws.Handler.Stats: the
	// connections that negotiated permessage-deflate, the messages (one per
	// Write of mochi's, which may hold several MQTT packets) that traveled
	// compressed each way, and the MQTT bytes sent compressed.
	Compressed            uint64 `json:"compressed"`
	CompressedMessagesIn  uint64 `json:"compressed_in"`
	CompressedMessagesOut uint64 `json:"compressed_out"`
	CompressedBytesOut    uint64 `json:"compressed_bytes_out"`
	// Memory, filled by the "memory" command only: after a GC that
	// returns free memory to the system.
	HeapInuse  uint64 `json:"heap_inuse,omitempty"`
	StackInuse uint64 `json:"stack_inuse,omitempty"`
	RSS        int64  `json:"rss,omitempty"`
}

// Wire returns the bytes on the wire both ways.
func (s BrokerStats) Wire() uint64 { return s.WireIn + s.WireOut }

// BrokerMain is the broker process's main function; it returns the exit
// code. It prints "ready ADDR" once it listens, then answers each line of
// its standard input ("stats" or "memory") with a JSON BrokerStats line,
// and stops when its standard input closes.
func BrokerMain() int {
	compression, err := Mode(os.Getenv(BrokerEnv)).options()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if dir := os.Getenv(BrokerProfileEnv); dir != "" {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("broker-%s-%d.prof", os.Getenv(BrokerEnv), os.Getpid())))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() {
			pprof.StopCPUProfile()
			_ = f.Close()
		}()
	}
	if _, err := sysinfo.RaiseFileLimit(1 << 15); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s := mqtt.New(&mqtt.Options{Logger: log})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	b, err := mochi.Attach(s, mochi.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := s.Serve(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = s.Close() }()
	h := &mqttws.Handler{Backend: b, Logger: log, Compression: compression}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	tl := &tcpListener{Listener: ln, wrap: os.Getenv(BrokerWrapEnv) == "1"}
	mux := http.NewServeMux()
	mux.Handle(brokerPath, h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(tl) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.Shutdown(ctx)
		_ = srv.Shutdown(ctx)
	}()
	fmt.Println("ready", ln.Addr())

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		st := BrokerStats{CPU: cpuTime()}
		if u, err := sysinfo.ProcUsage(os.Getpid()); err == nil {
			st.Syscalls = u.Syscalls
		}
		st.WireIn, st.WireOut, st.Conns = tl.wire()
		st.WrapIn, st.WrapOut = tl.wrapped()
		st.Dropped = atomic.LoadInt64(&s.Info.MessagesDropped) + atomic.LoadInt64(&s.Info.InflightDropped)
		hs := h.Stats()
		st.Compressed, st.CompressedMessagesIn, st.CompressedMessagesOut = hs.Compressed, hs.CompressedMessagesIn, hs.CompressedMessagesOut
		st.CompressedBytesOut = hs.CompressedBytesOut
		if strings.TrimSpace(in.Text()) == "memory" {
			runtime.GC()
			debug.FreeOSMemory()
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			st.HeapInuse, st.StackInuse = m.HeapInuse, m.StackInuse
			st.RSS, _ = sysinfo.RSS(0)
		}
		line, _ := json.Marshal(st)
		fmt.Println(string(line))
	}
	return 0
}

// tcpListener notes every connection it accepts, so that the bytes each
// one carried can be read from the kernel (TCP_INFO): HTTP handshakes and
// WebSocket frames, both ways. It hands http.Server the *net.TCPConn
// itself: a counting wrapper would hide it, and with it the writev
// (net.Buffers) mqttws sends each frame's header and payload with, adding
// a write system call per frame to the CPU measured.
type tcpListener struct {
	net.Listener
	wrap  bool // hand out meteredConns
	mu    sync.Mutex
	conns []*countedConn
}

type countedConn struct {
	c       *net.TCPConn
	in, out uint64 // last read from TCP_INFO
	closed  bool
	// read and written through the meteredConn, if any
	wrapIn, wrapOut atomic.Uint64
}

func (l *tcpListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c, nil
	}
	cc := &countedConn{c: tc}
	l.mu.Lock()
	l.conns = append(l.conns, cc)
	l.mu.Unlock()
	if l.wrap {
		return &meteredConn{Conn: c, cc: cc}, nil
	}
	return c, nil
}

// wrapped returns the bytes read and written through meteredConns.
func (l *tcpListener) wrapped() (in, out uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, cc := range l.conns {
		in += cc.wrapIn.Load()
		out += cc.wrapOut.Load()
	}
	return in, out
}

// meteredConn counts the bytes read and written through it.
type meteredConn struct {
	net.Conn
	cc *countedConn
}

func (c *meteredConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.cc.wrapIn.Add(uint64(n))
	return n, err
}

func (c *meteredConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.cc.wrapOut.Add(uint64(n))
	return n, err
}

// wire returns the bytes received and sent over every connection accepted
// so far, and their count. A connection closed since the last call counts
// with what it carried when last read.
func (l *tcpListener) wire() (in, out uint64, conns int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, cc := range l.conns {
		if !cc.closed {
			rc, err := cc.c.SyscallConn()
			if err == nil {
				var info *unix.TCPInfo
				err = rc.Control(func(fd uintptr) {
					var gerr error
					info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
					if gerr != nil {
						info = nil
					}
				})
				if err == nil && info != nil {
					// Bytes_sent counts retransmissions too (loopback has
					// some: tail loss probes on a busy machine).
					cc.in, cc.out = info.Bytes_received, info.Bytes_sent-info.Bytes_retrans
				} else {
					cc.closed = true
				}
			} else {
				cc.closed = true
			}
		}
		in += cc.in
		out += cc.out
	}
	return in, out, len(l.conns)
}

// Broker is a running broker process.
type Broker struct {
	Mode Mode
	Addr string // 127.0.0.1:port
	URL  string // ws://127.0.0.1:port/mqtt

	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	stderr *lockedBuffer
	mu     sync.Mutex
}

// StartBroker starts the test binary as a broker with compression in mode
// and returns once it listens; env is added to its environment.
func StartBroker(mode Mode, env ...string) (*Broker, error) {
	if _, err := mode.options(); err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("compression: the broker's executable: %w", err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(append(os.Environ(), BrokerEnv+"="+string(mode)), env...)
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	b := &Broker{Mode: mode, cmd: cmd, in: in, out: bufio.NewReader(out), stderr: &lockedBuffer{}}
	cmd.Stderr = b.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("compression: start the broker: %w", err)
	}
	line, err := b.readLine(30 * time.Second)
	addr, ok := strings.CutPrefix(line, "ready ")
	if err != nil {
		_ = b.Stop()
		return nil, fmt.Errorf("compression: the broker did not start: %w: %s", err, b.stderr)
	}
	if !ok {
		_ = b.Stop()
		return nil, fmt.Errorf("compression: the broker printed %q, not \"ready ADDR\": %s", line, b.stderr)
	}
	b.Addr = addr
	b.URL = "ws://" + addr + brokerPath
	return b, nil
}

// PID returns the broker's process id.
func (b *Broker) PID() int { return b.cmd.Process.Pid }

// Stats returns the broker's CPU time, bytes on the wire and compression
// counts.
func (b *Broker) Stats() (BrokerStats, error) { return b.call("stats") }

// Memory returns Stats with the memory figures, after a GC in the broker.
func (b *Broker) Memory() (BrokerStats, error) { return b.call("memory") }

func (b *Broker) call(cmd string) (BrokerStats, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var st BrokerStats
	if _, err := fmt.Fprintln(b.in, cmd); err != nil {
		return st, fmt.Errorf("compression: broker %s: %w: %s", cmd, err, b.stderr)
	}
	line, err := b.readLine(30 * time.Second)
	if err != nil {
		return st, fmt.Errorf("compression: broker %s: %w: %s", cmd, err, b.stderr)
	}
	if err := json.Unmarshal([]byte(line), &st); err != nil {
		return st, fmt.Errorf("compression: broker %s answered %q: %w", cmd, line, err)
	}
	return st, nil
}

// readLine reads one line of the broker's output within timeout.
func (b *Broker) readLine(timeout time.Duration) (string, error) {
	return proc.ReadLine(b.out, timeout)
}

// Stop closes the broker's input, which stops it, and kills it if it is
// still there after a few seconds.
func (b *Broker) Stop() error {
	_ = b.in.Close()
	done := make(chan error, 1)
	go func() { done <- b.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("compression: broker: %w: %s", err, b.stderr)
		}
		return nil
	case <-time.After(10 * time.Second):
		_ = b.cmd.Process.Kill()
		return errors.Join(errors.New("compression: broker killed after 10s"), <-done)
	}
}

// lockedBuffer keeps the last few KiB written to it: a child's standard
// error, shown when it fails.
type lockedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	if len(l.buf) > 4<<10 {
		l.buf = append(l.buf[:0], l.buf[len(l.buf)-4<<10:]...)
	}
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.TrimSpace(string(l.buf))
}
