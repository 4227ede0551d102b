package interop

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqttws/mqttws/internal/pahotest"
	"github.com/mqttws/mqttws/internal/testbroker"
)

// nginxReadTimeout is nginx's proxy_read_timeout in these tests: 60 s by
// default, short here so that the tests run fast. nginx closes a proxied
// WebSocket after this long without a byte from the server.
const nginxReadTimeout = 2 * time.Second

// idleTime is how long the idle clients say nothing: well over
// nginxReadTimeout.
const idleTime = 5 * time.Second

// pingInterval is the handler's ping interval behind nginx: well under
// nginxReadTimeout.
const pingInterval = nginxReadTimeout / 4

// TestNginxInFront puts Debian's nginx, configured the usual way for
// WebSocket, in front of the embedded example: clients get every message
// through it, and the handler's pings (the example's -ping, short here) keep
// an idle connection open past nginx's proxy_read_timeout, which closes it
// without them.
func TestNginxInFront(t *testing.T) {
	t.Parallel()
	needFile(t, nginxPath, "nginx")
	cases := []struct {
		name      string
		ping      string // the example's -ping
		wantAlive bool
	}{
		{
			name:      "IdleConnectionOutlivesNginxTimeoutWhenTheHandlerPings",
			ping:      pingInterval.String(),
			wantAlive: true,
		},
		{
			name:      "IdleConnectionIsCutByNginxWhenTheHandlerDoesNotPing",
			ping:      "0",
			wantAlive: false,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			url := startNginx(t, hostPort(startEmbedded(t, "-ping", c.ping, "-trusted-proxy", "127.0.0.1")))
			lost := make(chan error, 1)
			cl := pahotest.Connect(t, url, clientID("idle"), func(err error) { lost <- err })
			topic := "interop/nginx/" + c.name
			got := make(chan []byte, 1)
			if tok := cl.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) { got <- m.Payload() }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatalf("subscribe: %v", tok.Error())
			}

			start := time.Now()
			timer := time.NewTimer(idleTime)
			defer timer.Stop()
			select {
			case err := <-lost:
				if c.wantAlive {
					t.Fatalf("the idle connection was lost after %v (nginx's proxy_read_timeout: %v): %v", time.Since(start).Round(time.Millisecond), nginxReadTimeout, err)
				}
				if after := time.Since(start); after < nginxReadTimeout-time.Second/2 {
					t.Fatalf("the connection was lost after %v, before nginx's proxy_read_timeout (%v): %v", after, nginxReadTimeout, err)
				}
				return
			case <-timer.C:
				if !c.wantAlive {
					t.Fatalf("the idle connection outlived nginx's proxy_read_timeout (%v) for %v with no pings: the test proves nothing", nginxReadTimeout, idleTime)
				}
			}

			want := payload(1000, seedOf(c.name))
			if tok := cl.Publish(topic, 1, false, want); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatalf("publish after %v idle: %v", idleTime, tok.Error())
			}
			select {
			case p := <-got:
				if string(p) != string(want) {
					t.Fatalf("after %v idle: got %d bytes, want the %d sent", idleTime, len(p), len(want))
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("after %v idle: the message did not come back", idleTime)
			}
		})
	}

	t.Run("ClientsGetEveryMessageThroughNginx", func(t *testing.T) {
		t.Parallel()
		url := startNginx(t, hostPort(startEmbedded(t, "-ping", pingInterval.String(), "-trusted-proxy", "127.0.0.1")))
		tg := target{name: "nginx", url: url, broker: mochiBroker, mqttws: true}
		sizes := []int{0, 126, 65536, 1 << 20}

		var nodeCs []nodeCase
		for _, v := range mqttVersions {
			for _, n := range sizes {
				name := fmt.Sprintf("transfer/v%d/qos1/%s", v, sizeName(n))
				nodeCs = append(nodeCs, nodeCase{
					Name:      name,
					Kind:      "transfer",
					Version:   v,
					QoS:       1,
					Size:      n,
					Seed:      seedOf(name),
					TimeoutMs: int(nodeCaseTimeout / time.Millisecond),
				})
			}
		}
		needNode(t)
		var out struct {
			Results []nodeResult `json:"results"`
		}
		if err := runScript(t, nodeRunTimeout, "clients.mjs", nodePlan{URL: url, Concurrency: 4, Cases: nodeCs}, &out); err != nil {
			t.Fatal(err)
		}
		results := map[string]nodeResult{}
		for _, r := range out.Results {
			results[r.Name] = r
		}
		for _, c := range nodeCs {
			t.Run("MQTT.js/"+c.Name, func(t *testing.T) {
				checkNodeCase(t, tg, c, results[c.Name])
			})
		}

		clients := []struct {
			name        string
			run         goTransfer
			subprotocol string
		}{
			{
				name: "paho.mqtt.golang",
				run:  pahoTransfer,
			},
			{
				name:        "paho.golang",
				run:         paho5Transfer,
				subprotocol: "mqtt",
			},
		}
		for _, cl := range clients {
			for _, n := range sizes {
				c := goCase{name: "qos1/" + sizeName(n), qos: 1, size: n}
				c.seed = seedOf(c.name)
				t.Run(cl.name+"/"+c.name, func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), goCaseTimeout)
					defer cancel()
					r := cl.run(ctx, url, c)
					if r.err != nil {
						t.Fatal(r.err)
					}
					if r.subprotocol != cl.subprotocol {
						t.Errorf("negotiated subprotocol %q, want %q", r.subprotocol, cl.subprotocol)
					}
					wantMessage{topic: goTopic(c), qos: c.qos, size: c.size, seed: c.seed}.check(t, "subscriber", r.message)
				})
			}
		}
	})
}

// hostPort returns the host:port of a target.
func hostPort(tg target) string {
	return strings.TrimSuffix(strings.TrimPrefix(tg.url, "ws://"), "/mqtt")
}

// startNginx runs nginx on 127.0.0.1 as a reverse proxy to upstream
// (host:port), with a configuration of its own in a temporary directory,
// and returns the WebSocket URL of /mqtt through it.
func startNginx(t *testing.T, upstream string) string {
	t.Helper()
	needFile(t, nginxPath, "nginx")
	var lastErr error
	for range 3 {
		url, err := tryNginx(t, upstream)
		if err == nil {
			return url
		}
		lastErr = err
	}
	t.Fatalf("start nginx: %v", lastErr)
	return ""
}

func tryNginx(t *testing.T, upstream string) (string, error) {
	port, err := testbroker.FreePort()
	if err != nil {
		return "", err
	}
	dir := t.TempDir()
	return runNginx(t, dir, nginxConfig(t, dir, port, upstream), port)
}

// runNginx runs nginx with the main configuration conf, written in dir,
// waits until it listens on port, and stops it when the test ends.
func runNginx(t *testing.T, dir, conf string, port int) (string, error) {
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return "", err
	}
	var log testbroker.LockedBuffer
	cmd := exec.Command(nginxPath, "-p", dir, "-c", confPath, "-e", filepath.Join(dir, "error.log"))
	cmd.Stdout = &log
	cmd.Stderr = &log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return "", err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	stop := func() {
		// SIGTERM is nginx's fast shutdown; its workers are in its group.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(stopTimeout):
			_ = killGroup(cmd.Process.Pid)
			<-exited
		}
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(startTimeout)
	for !accepts(addr) {
		select {
		case <-exited:
			errLog, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			return "", fmt.Errorf("nginx exited: %s%s", log.String(), errLog)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return "", fmt.Errorf("nginx did not listen on %s within %v", addr, startTimeout)
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			errLog, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx's error log:\n%s%s", log.String(), tail(string(errLog)))
		}
	})
	return "ws://" + addr + "/mqtt", nil
}

// deployGuideNginx is the nginx configuration of the deployment guide
// (docs/deploy.md), which these tests run.
const deployGuideNginx = "../docs/nginx-mqttws.conf"

// nginxConfig is the deployment guide's configuration, with this test's
// addresses and timeout put in, inside a main configuration that keeps
// every file in dir.
func nginxConfig(t testing.TB, dir string, port int, upstream string) string {
	t.Helper()
	sitePath := guideSite(t, deployGuideNginx, filepath.Join(dir, "mqttws.conf"), [][2]string{
		{"server 127.0.0.1:8080;", "server " + upstream + ";"},
		{"listen 80;", fmt.Sprintf("listen 127.0.0.1:%d;", port)},
		{"proxy_read_timeout 75s;", fmt.Sprintf("proxy_read_timeout %ds;", int(nginxReadTimeout/time.Second))},
		{"proxy_send_timeout 75s;", fmt.Sprintf("proxy_send_timeout %ds;", int(nginxReadTimeout/time.Second))},
	})
	return nginxMainConfig(dir, "", fmt.Sprintf(`http {
	access_log %[1]s/access.log;
	client_body_temp_path %[1]s/client_body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;

	include %[2]s;
}
`, dir, sitePath))
}

// guideSite writes the deployment guide's file guidePath to path with each
// pair's first string, which must appear in it exactly once, replaced by the
// second, and returns path.
func guideSite(t testing.TB, guidePath, path string, replace [][2]string) string {
	t.Helper()
	guide, err := os.ReadFile(guidePath)
	if err != nil {
		t.Fatal(err)
	}
	site := string(guide)
	for _, r := range replace {
		if n := strings.Count(site, r[0]); n != 1 {
			t.Fatalf("%s: %q appears %d times, want once: the test and the guide disagree", guidePath, r[0], n)
		}
		site = strings.Replace(site, r[0], r[1], 1)
	}
	if err := os.WriteFile(path, []byte(site), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// nginxMainConfig is a main configuration for one worker that keeps its pid
// file and error log in dir, with head (load_module lines) before it and
// body after its events block. Started as root, nginx would run its worker
// as nobody: it runs as the current user.
func nginxMainConfig(dir, head, body string) string {
	var userLine string
	if os.Geteuid() == 0 {
		group := "root"
		if g, err := user.LookupGroupId(strconv.Itoa(os.Getegid())); err == nil {
			group = g.Name
		}
		userLine = "user root " + group + ";"
	}
	return fmt.Sprintf(`%[3]sdaemon off;
master_process on;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
%[2]s

events {
	worker_connections 256;
}

%[4]s`, dir, userLine, head, body)
}

// TestDeployGuideShowsTheTestedNginxConfig: the nginx block of
// docs/deploy.md is the file the nginx tests run.
func TestDeployGuideShowsTheTestedNginxConfig(t *testing.T) {
	guide, err := os.ReadFile("../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(deployGuideNginx)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```nginx\n(.*?)```").FindSubmatch(guide)
	if m == nil {
		t.Fatal("docs/deploy.md has no nginx block")
	}
	if string(m[1]) != string(conf) {
		t.Fatalf("docs/deploy.md's nginx block differs from %s", deployGuideNginx)
	}
}
