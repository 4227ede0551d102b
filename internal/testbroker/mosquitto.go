// Package testbroker starts the real peers of mqttws's integration tests: a
// mosquitto broker in a child process, paho MQTT clients over WebSocket, and
// raw WebSocket clients that speak frame by frame.
//
// Everything listens on 127.0.0.1 and is stopped by the test's Cleanup.
package testbroker

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// MosquittoPath is where Debian's mosquitto package installs the broker.
const MosquittoPath = "/usr/sbin/mosquitto"

// MaxPacketSize is the max_packet_size the broker is started with: room for
// a 1 MiB payload and its headers, with margin.
const MaxPacketSize = 4 << 20

// startTimeout bounds the wait for the broker to accept connections.
const startTimeout = 10 * time.Second

// Options configures a mosquitto started by Start. The zero value runs a
// plain TCP listener.
type Options struct {
	// UnixSocket, when not empty, is the path of a second listener on a
	// unix socket.
	UnixSocket string
	// CertFile and KeyFile, when set, make the TCP listener TLS.
	CertFile, KeyFile string
}

// Mosquitto is a running broker.
type Mosquitto struct {
	// Addr is the TCP listener's "127.0.0.1:port".
	Addr string
	// UnixSocket is the unix socket listener's path, if any.
	UnixSocket string
}

// StartMosquitto starts a mosquitto broker with a plain TCP listener on a
// free loopback port and returns its address. The broker is killed when the
// test ends.
func StartMosquitto(t testing.TB) string {
	t.Helper()
	return Start(t, Options{}).Addr
}

// Start starts a mosquitto broker configured by opts, waits until its TCP
// listener accepts connections, and kills it when the test ends. A missing
// mosquitto binary fails the test: the integration tests need it.
func Start(t testing.TB, opts Options) *Mosquitto {
	t.Helper()
	if _, err := os.Stat(MosquittoPath); err != nil {
		t.Fatalf("mosquitto is needed by this test and was not found at %s (%v): install it with `apt-get install mosquitto`", MosquittoPath, err)
	}
	// The free port is found by binding and releasing it, so another process
	// may take it before mosquitto does: try again with a new port then.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		m, err := start(t, opts)
		if err == nil {
			return m
		}
		lastErr = err
	}
	t.Fatalf("start mosquitto: %v", lastErr)
	return nil
}

func start(t testing.TB, opts Options) (*Mosquitto, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	m := &Mosquitto{
		Addr:       net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		UnixSocket: opts.UnixSocket,
	}
	if opts.UnixSocket != "" {
		// A killed broker leaves its socket behind, and a socket that
		// exists cannot be bound again.
		_ = os.Remove(opts.UnixSocket)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(conf, []byte(config(port, opts)), 0o600); err != nil {
		return nil, err
	}

	var log LockedBuffer
	cmd := exec.Command(MosquittoPath, "-c", conf)
	cmd.Stdout = &log
	cmd.Stderr = &log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", MosquittoPath, err)
	}
	exited := make(chan error, 1)
	done := make(chan struct{}) // closed once the process is reaped
	go func() {
		exited <- cmd.Wait()
		close(done)
	}()
	stop := func() {
		_ = cmd.Process.Kill()
		<-done // not exited: waitListening may have taken its value
	}

	if err := waitListening(m, &log, exited); err != nil {
		stop()
		return nil, fmt.Errorf("%w; mosquitto's log:\n%s", err, log.String())
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("mosquitto's log:\n%s", log.String())
		}
	})
	return m, nil
}

// config renders a mosquitto.conf for a broker listening on port.
func config(port int, opts Options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listener %d 127.0.0.1\n", port)
	b.WriteString("socket_domain ipv4\n")
	if opts.CertFile != "" {
		fmt.Fprintf(&b, "certfile %s\nkeyfile %s\n", opts.CertFile, opts.KeyFile)
	}
	if opts.UnixSocket != "" {
		fmt.Fprintf(&b, "listener 0 %s\n", opts.UnixSocket)
	}
	b.WriteString("allow_anonymous true\n")
	fmt.Fprintf(&b, "max_packet_size %d\n", MaxPacketSize)
	b.WriteString("set_tcp_nodelay true\n")
	// mosquitto 2.0.11 never sends a QoS 2 message that it queued while the
	// subscriber's inflight window (20 by default) was full, once the window
	// drains (inflight quota bugs fixed in 2.0.13, mosquitto issue #2306;
	// seen here with paho over plain TCP, no mqttws involved). No window
	// means no queue.
	b.WriteString("max_inflight_messages 0\n")
	b.WriteString("persistence false\n")
	b.WriteString("log_dest stderr\n")
	if os.Geteuid() == 0 {
		// Started as root, mosquitto switches to user "mosquitto", which
		// cannot create a socket in the test's private temporary directory.
		b.WriteString("user root\n")
	}
	return b.String()
}

// waitListening waits until the broker says it runs, which it does once it
// has opened every listener, and its listeners accept connections; or until
// it exits (a listener it could not open, such as a port taken meanwhile).
func waitListening(m *Mosquitto, log *LockedBuffer, exited <-chan error) error {
	deadline := time.Now().Add(startTimeout)
	accepts := func(network, addr string) bool {
		c, err := net.DialTimeout(network, addr, 100*time.Millisecond)
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	}
	for {
		if strings.Contains(log.String(), " running") &&
			accepts("tcp", m.Addr) &&
			(m.UnixSocket == "" || accepts("unix", m.UnixSocket)) {
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("mosquitto exited before listening on %s: %v", m.Addr, err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mosquitto did not listen on %s within %v", m.Addr, startTimeout)
		}
	}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ClosedAddr returns a loopback TCP address where nothing listens (a port
// that was just released).
func ClosedAddr(t testing.TB) string {
	t.Helper()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// LockedBuffer collects a child process's output; exec copies into it from
// its own goroutine.
type LockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
