// Package mosquitto starts Debian's mosquitto broker on a loopback port with
// a generated configuration, for the benchmarks that compare with it.
package mosquitto

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mqttws/mqttws/benchmarks/internal/sysinfo"
)

// Binary is where Debian's package installs the broker.
const Binary = "/usr/sbin/mosquitto"

// Broker is a running mosquitto.
type Broker struct {
	Addr string // "127.0.0.1:port"

	cmd  *exec.Cmd
	dir  string
	logs *os.File
}

// Available reports whether the mosquitto binary is installed, and how to
// install it when not.
func Available() error {
	if _, err := os.Stat(Binary); err != nil {
		return fmt.Errorf("mosquitto: %s not found (apt-get install mosquitto): %w", Binary, err)
	}
	return nil
}

// Config returns the configuration of a broker listening on port of
// 127.0.0.1 only (socket_domain ipv4: without it mosquitto binds every
// interface), over WebSocket when wsPort is not zero, with TCP_NODELAY (off
// by default, and the cause of 40 ms latency spikes). Everything else keeps
// mosquitto's defaults, max_queued_messages 1000 included.
//
// A WebSocket broker still gets its plain MQTT listener on port: mosquitto
// 2.0.11 refuses to start with WebSocket listeners alone ("Unable to start
// any listening sockets"). Clients use wsPort only.
func Config(port, wsPort int) string {
	lines := []string{
		"persistence false",
		"log_dest stderr",
		"log_type error",
		"set_tcp_nodelay true",
		"allow_anonymous true",
		fmt.Sprintf("listener %d 127.0.0.1", port),
		"socket_domain ipv4",
		"protocol mqtt",
	}
	if wsPort != 0 {
		lines = append(lines,
			fmt.Sprintf("listener %d 127.0.0.1", wsPort),
			"socket_domain ipv4",
			"protocol websockets",
		)
	}
	return strings.Join(lines, "\n") + "\n"
}

// Start runs mosquitto on addr ("127.0.0.1:port") and returns once it
// accepts connections. It inherits this process's file-descriptor limit.
func Start(addr string, websockets bool) (*Broker, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	port, err := portOf(addr)
	if err != nil {
		return nil, err
	}
	tcpPort, wsPort := port, 0
	if websockets {
		if tcpPort, err = freePort(); err != nil {
			return nil, err
		}
		wsPort = port
	}
	dir, err := os.MkdirTemp("", "mqttws-bench-mosquitto-")
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(conf, []byte(Config(tcpPort, wsPort)), 0o644); err != nil {
		return nil, err
	}
	logs, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(Binary, "-c", conf)
	cmd.Stdout = logs
	cmd.Stderr = logs
	b := &Broker{Addr: addr, cmd: cmd, dir: dir, logs: logs}
	if err := cmd.Start(); err != nil {
		b.cleanup()
		return nil, fmt.Errorf("mosquitto: start: %w", err)
	}
	if err := waitListening(addr, 10*time.Second); err != nil {
		_ = b.Stop()
		return nil, fmt.Errorf("mosquitto: %w (log: %s)", err, b.log())
	}
	return b, nil
}

// PID returns the broker's process id.
func (b *Broker) PID() int { return b.cmd.Process.Pid }

// RSS returns the broker's resident memory in bytes.
func (b *Broker) RSS() (int64, error) { return sysinfo.RSS(b.PID()) }

// Stop terminates the broker and removes its files.
func (b *Broker) Stop() error {
	defer b.cleanup()
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- b.cmd.Wait() }()
	select {
	case <-done:
		return nil
	case <-time.After(5 * time.Second):
		_ = b.cmd.Process.Kill()
		<-done
		return errors.New("mosquitto: killed after 5s")
	}
}

func (b *Broker) cleanup() {
	_ = b.logs.Close()
	_ = os.RemoveAll(b.dir)
}

// log returns what the broker printed so far.
func (b *Broker) log() string {
	out, _ := os.ReadFile(b.logs.Name())
	return strings.TrimSpace(string(out))
}

func waitListening(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening after %v: %w", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func portOf(addr string) (int, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return 0, fmt.Errorf("mosquitto: port of %q: %w", addr, err)
	}
	return port, nil
}

// freePort returns a loopback port free at the time of the call.
func freePort() (int, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
