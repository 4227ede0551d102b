package interop

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mqttws/mqttws/internal/testbroker"
)

// The NATS Server cluster behind the gateway in the cluster tests: three
// nodes on loopback, each with JetStream and an MQTT listener, MQTT's
// streams replicated on all three.

// natsVersion is the NATS Server the cluster tests need. Debian's 2.9.10
// loses acknowledged QoS 1 messages in a cluster.
const natsVersion = "v2.15.2"

// natsInstall installs it into $(go env GOPATH)/bin, as ./scripts/test.sh
// does when it is missing.
const natsInstall = "go install github.com/nats-io/nats-server/v2@" + natsVersion

// natsAckWait is how long NATS waits for a subscriber's PUBACK before it
// sends a QoS 1 message again (30s by default): a message delivered on a
// connection that broke, or by a consumer leader that died, comes again
// within a test's time.
const natsAckWait = 5 * time.Second

// natsReadyTimeout bounds a cluster's start: every node listening, routed,
// JetStream healthy and MQTT answering a CONNECT.
const natsReadyTimeout = 45 * time.Second

// natsServerPath returns the nats-server to run: $NATS_SERVER, else the one
// `go install` puts in $(go env GOPATH)/bin. It fails the test with the
// command that installs it when it is missing or of another version.
func natsServerPath(t testing.TB) string {
	t.Helper()
	path := os.Getenv("NATS_SERVER")
	if path == "" {
		gopath := os.Getenv("GOPATH")
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = strings.TrimSpace(string(out))
		}
		if gopath == "" {
			home, _ := os.UserHomeDir()
			gopath = filepath.Join(home, "go")
		}
		path = filepath.Join(strings.Split(gopath, string(filepath.ListSeparator))[0], "bin", "nats-server")
	}
	out, err := exec.Command(path, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("nats-server %s is needed by this test and could not be run at %s (%v): install it with `%s` (or set NATS_SERVER to its path); %s",
			natsVersion, path, err, natsInstall, installHint)
	}
	if !strings.Contains(string(out), natsVersion) {
		t.Fatalf("%s is %q, this test needs nats-server %s: install it with `%s`",
			path, strings.TrimSpace(string(out)), natsVersion, natsInstall)
	}
	return path
}

// natsNode is one node of a cluster started by startNATSCluster.
type natsNode struct {
	name string
	// mqtt is its MQTT listener's "127.0.0.1:port".
	mqtt string

	path, conf string
	log        *testbroker.LockedBuffer
	cmd        *exec.Cmd
	exited     chan struct{}
	health     string // its monitoring /healthz URL
}

// natsCluster is a cluster of NATS Server nodes.
type natsCluster struct {
	nodes []*natsNode
}

// startNATSCluster starts an n-node cluster, waits until every node serves
// MQTT, and kills it when the test ends.
func startNATSCluster(t testing.TB, n int) *natsCluster {
	t.Helper()
	path := natsServerPath(t)
	var lastErr error
	for range 3 { // ports are found free, then bound: another process may take one meanwhile
		c, err := tryNATSCluster(t, path, n)
		if err == nil {
			return c
		}
		lastErr = err
	}
	t.Fatalf("start a %d-node NATS cluster: %v", n, lastErr)
	return nil
}

func tryNATSCluster(t testing.TB, path string, n int) (*natsCluster, error) {
	dir := t.TempDir()
	ports := make([][4]int, n) // client, cluster, MQTT, monitoring
	for i := range ports {
		for j := range ports[i] {
			p, err := testbroker.FreePort()
			if err != nil {
				return nil, err
			}
			ports[i][j] = p
		}
	}
	var routes []string
	for i := range ports {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[i][1]))
	}
	c := &natsCluster{}
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		conf := filepath.Join(dir, name+".conf")
		text := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
jetstream {
  store_dir: %q
  max_memory_store: 64MB
  max_file_store: 1GB
}
cluster {
  name: mqttws
  listen: 127.0.0.1:%d
  routes: [%s]
}
mqtt {
  listen: 127.0.0.1:%d
  stream_replicas: 3
  ack_wait: "%s"
}
`, name, ports[i][0], ports[i][3], filepath.Join(dir, name), ports[i][1], strings.Join(routes, ", "), ports[i][2], natsAckWait)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			return nil, err
		}
		node := &natsNode{
			name:   name,
			mqtt:   net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[i][2])),
			path:   path,
			conf:   conf,
			health: fmt.Sprintf("http://127.0.0.1:%d/healthz", ports[i][3]),
		}
		c.nodes = append(c.nodes, node)
		if err := node.start(); err != nil {
			c.kill()
			return nil, err
		}
	}
	t.Cleanup(func() {
		c.kill()
		if t.Failed() {
			for _, n := range c.nodes {
				t.Logf("NATS node %s's log:\n%s", n.name, tail(n.log.String()))
			}
		}
	})
	if err := c.waitReady(time.Now().Add(natsReadyTimeout)); err != nil {
		c.kill()
		return nil, err
	}
	return c, nil
}

// start starts the node (again, after kill, with its store as it was left).
func (n *natsNode) start() error {
	if n.log == nil {
		n.log = &testbroker.LockedBuffer{}
	}
	n.cmd = exec.Command(n.path, "-c", n.conf)
	n.cmd.Stdout = n.log
	n.cmd.Stderr = n.log
	n.cmd.SysProcAttr = sysProcAttr()
	n.exited = make(chan struct{})
	if err := n.cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", n.path, err)
	}
	go func(cmd *exec.Cmd, exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(n.cmd, n.exited)
	return nil
}

// kill kills the node with SIGKILL (after SIGCONT, should it be frozen) and
// waits for it to be gone.
func (n *natsNode) kill() {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
}

// signal sends sig to the node.
func (n *natsNode) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := n.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("send %v to NATS node %s: %v", sig, n.name, err)
	}
}

func (c *natsCluster) kill() {
	for _, n := range c.nodes {
		_ = n.cmd.Process.Signal(syscall.SIGCONT)
		n.kill()
	}
}

// waitReady waits until every running node reports JetStream healthy and
// answers an MQTT CONNECT with an accepting CONNACK (the first CONNECT
// creates MQTT's streams, replicated on all nodes).
func (c *natsCluster) waitReady(deadline time.Time) error {
	for _, n := range c.nodes {
		if err := n.waitReady(deadline); err != nil {
			return err
		}
	}
	return nil
}

func (n *natsNode) waitReady(deadline time.Time) error {
	client := &http.Client{Timeout: time.Second}
	var last error
	for {
		select {
		case <-n.exited:
			return fmt.Errorf("NATS node %s exited: %v; its log:\n%s", n.name, n.cmd.ProcessState, tail(n.log.String()))
		default:
		}
		last = n.ready(client, deadline)
		if last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("NATS node %s not ready within %v: %v; its log:\n%s", n.name, natsReadyTimeout, last, tail(n.log.String()))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ready checks the node's health once: JetStream healthy, then an MQTT
// CONNECT accepted.
func (n *natsNode) ready(client *http.Client, deadline time.Time) error {
	resp, err := client.Get(n.health)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthz: %s %s", resp.Status, bytes.TrimSpace(body))
	}
	return mqttPing(n.mqtt, min(10*time.Second, time.Until(deadline)))
}

// mqttPing connects to an MQTT broker over TCP with a clean session,
// expects an accepting CONNACK within timeout, and disconnects.
func mqttPing(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(testbroker.ConnectPacket(testbroker.ClientID("ping"), 10)); err != nil {
		return err
	}
	ack := make([]byte, len(testbroker.ConnackAccepted))
	if _, err := io.ReadFull(c, ack); err != nil {
		return fmt.Errorf("MQTT CONNECT to %s: %w", addr, err)
	}
	if !bytes.Equal(ack, testbroker.ConnackAccepted) {
		return fmt.Errorf("MQTT CONNECT to %s: CONNACK % x", addr, ack)
	}
	_, _ = c.Write(testbroker.Disconnect)
	return nil
}
