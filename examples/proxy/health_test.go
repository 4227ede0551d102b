package main

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/mqttws/mqttws/examples/internal/exampletest"
	"github.com/mqttws/mqttws/internal/testbroker"
)

func TestHealthChecks(t *testing.T) {
	reachable := start(t)
	closed := testbroker.ClosedAddr(t)
	unreachable := exampletest.Start(t, program.Path(t), "-listen", "127.0.0.1:0", "-upstream", closed)
	tests := []struct {
		name  string
		proxy *exampletest.Process
		path  string
		host  string // empty: the listen address
		want  int
		body  string
	}{
		{
			name:  "the process serves",
			proxy: unreachable,
			path:  "/healthz",
			want:  http.StatusOK,
			body:  "ok\n",
		},
		{
			name:  "the broker accepts TCP connections",
			proxy: reachable,
			path:  "/readyz",
			want:  http.StatusOK,
			body:  "ready\n",
		},
		{
			name:  "the broker's port is closed",
			proxy: unreachable,
			path:  "/readyz",
			want:  http.StatusServiceUnavailable,
			body:  "not ready: no broker node reachable\n",
		},
		{
			name:  "a probe by a name the Host allowlist does not hold",
			proxy: reachable,
			path:  "/readyz",
			host:  "10.1.2.3:8080",
			want:  http.StatusOK,
			body:  "ready\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, "http://"+tc.proxy.Addr+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.host != "" {
				req.Host = tc.host
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != tc.want || string(b) != tc.body {
				t.Errorf("GET %s: %d %q, want %d %q", tc.path, resp.StatusCode, b, tc.want, tc.body)
			}
		})
	}
	// The reason is logged, with the address; the answer does not have it.
	unreachable.WaitLog(t, "not ready", exampletest.StartTimeout)
	if log := unreachable.Stderr(); !strings.Contains(log, closed) {
		t.Errorf("the log does not say which node failed:\n%s", log)
	}
}
