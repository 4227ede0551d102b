package interop

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mqttws/mqttws/internal/testbroker"
)

// broker names the MQTT broker behind a target: where brokers legitimately
// differ, the tests expect each one's own behaviour.
type broker string

const (
	mochiBroker     broker = "mochi"
	mosquittoBroker broker = "mosquitto"
)

// target is a server that MQTT over WebSocket clients connect to.
type target struct {
	// name names the target in subtest names.
	name string
	// url is the WebSocket URL of its MQTT endpoint.
	url string
	// origin is the origin of url (http://127.0.0.1:port), where the
	// browser tests place their page.
	origin string
	// broker is the broker behind it.
	broker broker
	// mqttws tells a target served by mqttws from the reference, mosquitto's
	// own WebSocket listener.
	mqttws bool
}

// Target names.
const (
	embeddedName  = "embedded"
	proxyName     = "proxy-mosquitto"
	referenceName = "mosquitto-websockets"
)

// startTargets starts the three servers every client is run against: the
// two examples, and mosquitto's own listener. They stop when the test ends.
func startTargets(t testing.TB) []target {
	t.Helper()
	return []target{
		startEmbedded(t),
		startProxy(t),
		startReference(t),
	}
}

// startEmbedded runs examples/embedded: a chi app, mqttws and mochi in one
// process, with flags added to -listen and -max-message (the transfers go up
// to 1 MiB messages; the example's default is 128 KiB).
func startEmbedded(t testing.TB, flags ...string) target {
	t.Helper()
	args := append([]string{"-listen", "127.0.0.1:0", "-max-message", "2097152"}, flags...)
	line := startProcess(t, exampleBinary(t, "embedded"), args...)
	return newTarget(t, embeddedName, line, mochiBroker, true)
}

// startProxy runs examples/proxy in front of a mosquitto listening on TCP.
func startProxy(t testing.TB) target {
	t.Helper()
	m := testbroker.Start(t, testbroker.Options{})
	line := startProcess(t, exampleBinary(t, "proxy"), "-listen", "127.0.0.1:0", "-upstream", m.Addr)
	return newTarget(t, proxyName, line, mosquittoBroker, true)
}

// wsURL finds the WebSocket URL in the line an example prints once it
// serves. Both listen on 127.0.0.1:0: the kernel picks a port from the
// ephemeral range, above every port Chromium refuses (the highest is 10080).
var wsURL = regexp.MustCompile(`ws://127\.0\.0\.1:[0-9]+/mqtt`)

func newTarget(t testing.TB, name, line string, b broker, isMQTTWS bool) target {
	t.Helper()
	url := wsURL.FindString(line)
	if url == "" {
		t.Fatalf("%s printed %q, with no ws://127.0.0.1:PORT/mqtt URL in it", name, line)
	}
	return target{
		name:   name,
		url:    url,
		origin: "http" + strings.TrimSuffix(strings.TrimPrefix(url, "ws"), "/mqtt"),
		broker: b,
		mqttws: isMQTTWS,
	}
}

// startReference runs mosquitto with its own WebSocket listener (through
// libwebsockets), configured as internal/testbroker configures the one
// behind the proxy.
func startReference(t testing.TB) target {
	t.Helper()
	needFile(t, testbroker.MosquittoPath, "mosquitto")
	// The port is found by binding and releasing it: another process may
	// take it before mosquitto does, so try again with a new one then.
	var lastErr error
	for range 3 {
		url, err := startMosquittoWebSockets(t)
		if err == nil {
			return target{
				name:   referenceName,
				url:    url,
				origin: "http" + strings.TrimSuffix(strings.TrimPrefix(url, "ws"), "/mqtt"),
				broker: mosquittoBroker,
			}
		}
		lastErr = err
	}
	t.Fatalf("start mosquitto with a WebSocket listener: %v", lastErr)
	return target{}
}

func startMosquittoWebSockets(t testing.TB) (string, error) {
	port, err := testbroker.FreePort()
	if err != nil {
		return "", err
	}
	tcpPort, err := testbroker.FreePort()
	if err != nil {
		return "", err
	}

	var conf strings.Builder
	// mosquitto 2.0.11 counts only its own sockets, not libwebsockets',
	// and exits ("Unable to start any listening sockets") without one: a
	// TCP listener, unused, keeps it running.
	fmt.Fprintf(&conf, "listener %d 127.0.0.1\n", tcpPort)
	conf.WriteString("socket_domain ipv4\n")
	fmt.Fprintf(&conf, "listener %d 127.0.0.1\n", port)
	conf.WriteString("protocol websockets\n")
	// Without it mosquitto binds every interface, whatever the address.
	conf.WriteString("socket_domain ipv4\n")
	conf.WriteString("allow_anonymous true\n")
	fmt.Fprintf(&conf, "max_packet_size %d\n", testbroker.MaxPacketSize)
	conf.WriteString("set_tcp_nodelay true\n")
	// The QoS 2 inflight-window bug of mosquitto 2.0.11: see
	// internal/testbroker's config.
	conf.WriteString("max_inflight_messages 0\n")
	conf.WriteString("persistence false\n")
	conf.WriteString("log_dest stderr\n")
	if os.Geteuid() == 0 {
		conf.WriteString("user root\n")
	}
	path := filepath.Join(t.TempDir(), "mosquitto.conf")
	if err := os.WriteFile(path, []byte(conf.String()), 0o600); err != nil {
		return "", err
	}

	var log testbroker.LockedBuffer
	cmd := exec.Command(testbroker.MosquittoPath, "-c", path)
	cmd.Stdout = &log
	cmd.Stderr = &log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return "", err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(startTimeout)
	for !strings.Contains(log.String(), " running") || !accepts(addr) {
		select {
		case err := <-exited:
			return "", fmt.Errorf("mosquitto exited: %v\n%s", err, log.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return "", fmt.Errorf("mosquitto did not listen on %s within %v\n%s", addr, startTimeout, log.String())
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("mosquitto (WebSocket listener)'s log:\n%s", tail(log.String()))
		}
	})
	return "ws://" + addr + "/mqtt", nil
}

// accepts reports whether a TCP connection to addr succeeds.
func accepts(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}
