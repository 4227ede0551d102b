package interop

import (
	"bufio"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mqttws/mqttws/internal/testbroker"
)

// The pieces of the gateways test (gateways_test.go): examples/proxy
// processes that one can kill, with their metrics, and nginx as a TCP load
// balancer (its stream module) running docs/nginx-stream.conf.

// nginxStreamModule is where Debian's libnginx-mod-stream installs nginx's
// stream module, which the Debian nginx package does not carry.
const nginxStreamModule = "/usr/lib/nginx/modules/ngx_stream_module.so"

// deployGuideStream is the TCP load balancer configuration of the
// deployment guide (docs/deploy.md), which the gateways test runs.
const deployGuideStream = "../docs/nginx-stream.conf"

// deployGuideGateways are the gateways' addresses in deployGuideStream.
var deployGuideGateways = []string{"127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"}

// gateway is an examples/proxy process serving on its own loopback port,
// with its metrics on another.
type gateway struct {
	name string
	// addr is its WebSocket listener's "127.0.0.1:port".
	addr string
	// metrics is its Prometheus endpoint's URL.
	metrics string

	cmd    *exec.Cmd
	stdout firstLine
	stderr testbroker.LockedBuffer
	exited chan struct{}
	err    error // cmd.Wait's, once exited is closed
	killed bool
}

// metricsURL finds the metrics URL in the line the proxy logs at start.
var metricsURL = regexp.MustCompile(`url=(http://127\.0\.0\.1:[0-9]+/metrics)`)

// startGateway runs examples/proxy in front of the broker at upstream, with
// the flags the deployment guide gives gateways behind a TCP load balancer.
// When the test ends a gateway that was not killed gets SIGTERM and must
// stop within stopTimeout with exit status 0; none may report a data race.
func startGateway(t testing.TB, name, upstream string) *gateway {
	t.Helper()
	g := &gateway{name: name, exited: make(chan struct{})}
	args := []string{
		"-listen", "127.0.0.1:0",
		"-upstream", upstream,
		"-metrics-listen", "127.0.0.1:0",
		// Every client comes from nginx's address: the per-address caps
		// are nginx's (limit_conn) behind a TCP balancer.
		"-max-conns-per-addr", "0",
		"-max-streams-per-addr", "0",
	}
	g.cmd = exec.Command(exampleBinary(t, "proxy"), args...)
	g.stdout.first = make(chan string, 1)
	g.cmd.Stdout = &g.stdout
	g.cmd.Stderr = &g.stderr
	g.cmd.SysProcAttr = sysProcAttr()
	if err := g.cmd.Start(); err != nil {
		t.Fatalf("start gateway %s: %v", name, err)
	}
	go func() {
		g.err = g.cmd.Wait()
		close(g.exited)
	}()
	t.Cleanup(func() { g.stop(t) })

	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	var line string
	select {
	case line = <-g.stdout.first:
	case <-g.exited:
		t.Fatalf("gateway %s exited before it served: %v\n%s", name, g.err, g.stderr.String())
	case <-timer.C:
		t.Fatalf("gateway %s printed nothing within %v\n%s", name, startTimeout, g.stderr.String())
	}
	g.addr = hostPort(newTarget(t, name, line, mosquittoBroker, true))
	// The metrics line is logged before the proxy says it serves, but on
	// stderr, which is copied apart from stdout: it may come after.
	deadline := time.Now().Add(startTimeout)
	for {
		if m := metricsURL.FindStringSubmatch(g.stderr.String()); m != nil {
			g.metrics = m[1]
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway %s logged no metrics URL within %v:\n%s", name, startTimeout, g.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kill kills the gateway with SIGKILL and waits until it is gone: its
// sockets are closed by the kernel, its listener refuses connections.
func (g *gateway) kill(t testing.TB) {
	t.Helper()
	g.killed = true
	if err := g.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill gateway %s: %v", g.name, err)
	}
	select {
	case <-g.exited:
	case <-time.After(stopTimeout):
		t.Fatalf("gateway %s still runs %v after SIGKILL", g.name, stopTimeout)
	}
}

// stop stops the gateway with SIGTERM unless it was killed, and fails the
// test if it does not stop cleanly or reported a data race.
func (g *gateway) stop(t testing.TB) {
	if !g.killed {
		_ = g.cmd.Process.Signal(syscall.SIGTERM)
	}
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-g.exited:
	case <-timer.C:
		_ = killGroup(g.cmd.Process.Pid)
		<-g.exited
		t.Errorf("gateway %s did not stop within %v of SIGTERM; its log:\n%s", g.name, stopTimeout, tail(g.stderr.String()))
		return
	}
	log := g.stderr.String()
	switch {
	case strings.Contains(log, "WARNING: DATA RACE"):
		t.Errorf("gateway %s reported a data race:\n%s", g.name, log)
	case g.err != nil && !g.killed:
		t.Errorf("gateway %s stopped with %v; its log:\n%s", g.name, g.err, tail(log))
	case t.Failed():
		t.Logf("gateway %s's log:\n%s", g.name, tail(log))
	}
}

// metricsClient reads the gateways' metrics, with no connection kept
// between reads (none outlives the test).
var metricsClient = &http.Client{
	Timeout:   5 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

// active returns the gateway's mqttws_connections_active: the WebSocket
// connections it serves now.
func (g *gateway) active() (int, error) {
	resp, err := metricsClient.Get(g.metrics)
	if err != nil {
		return 0, fmt.Errorf("gateway %s's metrics: %w", g.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("gateway %s's metrics: %s", g.name, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "mqttws_connections_active ")
		if !ok {
			continue
		}
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, fmt.Errorf("gateway %s's metrics: mqttws_connections_active %q: %w", g.name, v, err)
		}
		return int(n), nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("gateway %s's metrics: %w", g.name, err)
	}
	return 0, fmt.Errorf("gateway %s's metrics have no mqttws_connections_active", g.name)
}

// startNginxStream runs nginx on 127.0.0.1 as a TCP load balancer in
// front of gateways (host:port each), with docs/nginx-stream.conf, and
// returns the WebSocket URL of /mqtt through it and the path of its error
// log.
func startNginxStream(t *testing.T, gateways []string) (url, errorLog string) {
	t.Helper()
	needFile(t, nginxPath, "nginx")
	needFile(t, nginxStreamModule, "libnginx-mod-stream")
	var lastErr error
	for range 3 { // the port is found free, then bound: another process may take it meanwhile
		port, err := testbroker.FreePort()
		if err != nil {
			lastErr = err
			continue
		}
		dir := t.TempDir()
		if url, lastErr = runNginx(t, dir, nginxStreamConfig(t, dir, port, gateways), port); lastErr == nil {
			return url, filepath.Join(dir, "error.log")
		}
	}
	t.Fatalf("start nginx (stream): %v", lastErr)
	return "", ""
}

// nginxStreamConfig is the deployment guide's stream configuration, with
// this test's addresses put in, inside a main configuration that loads the
// stream module and keeps every file in dir.
func nginxStreamConfig(t testing.TB, dir string, port int, gateways []string) string {
	t.Helper()
	if len(gateways) != len(deployGuideGateways) {
		t.Fatalf("%d gateways; %s has %d", len(gateways), deployGuideStream, len(deployGuideGateways))
	}
	replace := [][2]string{{"listen 80;", fmt.Sprintf("listen 127.0.0.1:%d;", port)}}
	for i, g := range gateways {
		replace = append(replace, [2]string{"server " + deployGuideGateways[i] + " ", "server " + g + " "})
	}
	sitePath := guideSite(t, deployGuideStream, filepath.Join(dir, "stream.conf"), replace)
	return nginxMainConfig(dir, "load_module "+nginxStreamModule+";\n", "include "+sitePath+";\n")
}
