package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mqttws/mqttws/internal/testbroker"
)

// Where Debian's packages install the peers.
const (
	chromiumPath = "/usr/bin/chromium"
	nginxPath    = "/usr/sbin/nginx"
)

// installHint ends every "peer missing" failure.
const installHint = "./scripts/test.sh installs every peer of these tests when missing"

// npmFiles are the files of the npm packages the tests load, relative to
// this directory.
var npmFiles = []string{
	"node_modules/mqtt/dist/mqtt.min.js",
	"node_modules/mqtt/build/index.js",
	"node_modules/paho-mqtt/paho-mqtt.js",
	"node_modules/playwright-core/package.json",
	"node_modules/ws/package.json",
}

// minNodeMajor is the oldest Node that playwright-core supports.
const minNodeMajor = 20

var nodeVersion struct {
	once    sync.Once
	version string
	err     error
}

// needNode returns the path of node, and fails the test unless node (20 or
// later) and the npm packages of package-lock.json are installed.
func needNode(t testing.TB) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is needed by this test and is not in PATH (%v): install it with `apt-get install nodejs npm`, then run `npm ci` in interop/; %s", err, installHint)
	}
	nodeVersion.once.Do(func() {
		out, err := exec.Command(node, "--version").Output()
		nodeVersion.version, nodeVersion.err = strings.TrimSpace(string(out)), err
	})
	var major int
	if _, err := fmt.Sscanf(nodeVersion.version, "v%d.", &major); nodeVersion.err != nil || err != nil || major < minNodeMajor {
		t.Fatalf("node %q (%v) is too old or broken: playwright-core needs Node %d or later; %s", nodeVersion.version, nodeVersion.err, minNodeMajor, installHint)
	}
	for _, f := range npmFiles {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("npm package file %s is missing (%v): run `npm ci` in interop/; %s", f, err, installHint)
		}
	}
	return node
}

// needFile fails the test unless the Debian package pkg installed path.
func needFile(t testing.TB, path, pkg string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s is needed by this test and was not found at %s (%v): install it with `apt-get install %s`; %s", pkg, path, err, pkg, installHint)
	}
}

// raceEnabled is set when the tests run under the race detector; the
// examples are then built with it as well.
var raceEnabled bool

// examples are the example programs, built once for the package into a
// temporary directory that TestMain removes.
var examples struct {
	dir  string
	once sync.Once
	err  error
}

// buildTimeout bounds the build of the examples.
const buildTimeout = 5 * time.Minute

// exampleBinary returns the path of the example program name
// (examples/name), built with the race detector when the tests run with it.
func exampleBinary(t testing.TB, name string) string {
	t.Helper()
	examples.once.Do(func() {
		gobin, err := exec.LookPath("go")
		if err != nil {
			examples.err = fmt.Errorf("the go command is not in PATH: %w", err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		args := []string{"build", "-o", examples.dir + string(filepath.Separator)}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "../examples/embedded", "../examples/proxy")
		out, err := exec.CommandContext(ctx, gobin, args...).CombinedOutput()
		if err != nil {
			examples.err = fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	})
	if examples.err != nil {
		t.Fatal(examples.err)
	}
	return filepath.Join(examples.dir, name)
}

// Bounds on a child process's start and stop.
const (
	startTimeout = 30 * time.Second
	stopTimeout  = 15 * time.Second
)

// process is a server running as a child process.
type process struct {
	name   string
	cmd    *exec.Cmd
	stdout firstLine
	stderr testbroker.LockedBuffer
	exited chan struct{}
	err    error // cmd.Wait's, once exited is closed
}

// startProcess runs a server, waits for the first line it prints on stdout
// and returns that line. The server gets SIGTERM when the test ends, must
// then stop within stopTimeout with exit status 0, and must have reported
// no data race.
func startProcess(t testing.TB, path string, args ...string) string {
	t.Helper()
	p := &process{
		name:   filepath.Base(path),
		cmd:    exec.Command(path, args...),
		exited: make(chan struct{}),
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
	t.Cleanup(func() { p.stop(t) })

	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case line := <-p.stdout.first:
		return line
	case <-p.exited:
		t.Fatalf("%s %s exited before it served: %v\n%s", p.name, strings.Join(args, " "), p.err, p.stderr.String())
	case <-timer.C:
		t.Fatalf("%s %s printed nothing within %v\n%s", p.name, strings.Join(args, " "), startTimeout, p.stderr.String())
	}
	return ""
}

// stop stops the server with SIGTERM, and fails the test if it does not
// stop cleanly or reported a data race.
func (p *process) stop(t testing.TB) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-p.exited:
	case <-timer.C:
		_ = killGroup(p.cmd.Process.Pid)
		<-p.exited
		t.Errorf("%s did not stop within %v of SIGTERM; its log:\n%s", p.name, stopTimeout, tail(p.stderr.String()))
		return
	}
	log := p.stderr.String()
	switch {
	case strings.Contains(log, "WARNING: DATA RACE"):
		t.Errorf("%s reported a data race:\n%s", p.name, log)
	case p.err != nil:
		t.Errorf("%s stopped with %v; its log:\n%s", p.name, p.err, tail(log))
	case t.Failed():
		t.Logf("%s's log:\n%s", p.name, tail(log))
	}
}

// tail returns the end of a long log.
func tail(log string) string {
	const max = 16 << 10
	if len(log) <= max {
		return log
	}
	return "…" + log[len(log)-max:]
}

// firstLine keeps what a child prints and sends its first line on first.
type firstLine struct {
	testbroker.LockedBuffer
	first chan string
	mu    sync.Mutex
	sent  bool
}

func (w *firstLine) Write(p []byte) (int, error) {
	n, _ := w.LockedBuffer.Write(p)
	w.mu.Lock()
	defer w.mu.Unlock()
	if line, _, ok := strings.Cut(w.LockedBuffer.String(), "\n"); ok && !w.sent {
		w.sent = true
		w.first <- line
	}
	return n, nil
}

// runScript runs a script of js/ with node, plan as JSON on its standard
// input, and decodes the JSON it prints into out. The script, and whatever
// it started (Chromium), is killed after timeout. It may be called from any
// goroutine; call needNode first.
func runScript(t testing.TB, timeout time.Duration, script string, plan, out any) error {
	return runScriptEnv(t, timeout, script, nil, plan, out)
}

// runScriptEnv is runScript with env added to the script's environment.
func runScriptEnv(t testing.TB, timeout time.Duration, script string, env []string, plan, out any) error {
	node, err := exec.LookPath("node")
	if err != nil {
		return err
	}
	in, err := json.Marshal(plan)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join("js", script))
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr testbroker.LockedBuffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.SysProcAttr = sysProcAttr()
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err = cmd.Run()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("node js/%s did not finish within %v; its stderr:\n%s", script, timeout, tail(stderr.String()))
	}
	if err != nil {
		return fmt.Errorf("node js/%s: %w; its stderr:\n%s", script, err, tail(stderr.String()))
	}
	if err := json.Unmarshal([]byte(stdout.String()), out); err != nil {
		return fmt.Errorf("node js/%s printed no result (%w); stdout:\n%s\nstderr:\n%s", script, err, tail(stdout.String()), tail(stderr.String()))
	}
	t.Logf("node js/%s ran in %v", script, time.Since(start).Round(time.Millisecond))
	return nil
}
