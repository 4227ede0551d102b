package main

import (
	"io"
	"net/http"
	"strings"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
)

func TestHealthChecks(t *testing.T) {
	p := start(t)
	tests := []struct {
		name   string
		method string
		path   string
		host   string // empty: the listen address
		want   int
		body   string
	}{
		{
			name:   "the process serves",
			method: http.MethodGet,
			path:   "/healthz",
			want:   http.StatusOK,
			body:   "ok\n",
		},
		{
			name:   "the broker serves",
			method: http.MethodGet,
			path:   "/readyz",
			want:   http.StatusOK,
			body:   "ready\n",
		},
		{
			name:   "a probe by a name the Host allowlist does not hold",
			method: http.MethodGet,
			path:   "/readyz",
			host:   "10.1.2.3:8080",
			want:   http.StatusOK,
			body:   "ready\n",
		},
		{
			name:   "HEAD",
			method: http.MethodHead,
			path:   "/healthz",
			want:   http.StatusOK,
		},
		{
			name:   "another method",
			method: http.MethodDelete,
			path:   "/readyz",
			want:   http.StatusMethodNotAllowed,
			body:   "method not allowed\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := healthRequest(t, tc.method, "http://"+p.Addr+tc.path, tc.host)
			if status != tc.want || body != tc.body {
				t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, status, body, tc.want, tc.body)
			}
		})
	}
	if log := p.Stderr(); strings.Contains(log, "/healthz") || strings.Contains(log, "/readyz") {
		t.Errorf("health checks are logged (a probe every few seconds would fill the log):\n%s", log)
	}
}

func TestReadinessIsFalseWhenTheBrokerStops(t *testing.T) {
	h := new(servingHook)
	broker := mqtt.New(brokerOptions(DefaultMaxMessage))
	if err := broker.AddHook(h, nil); err != nil {
		t.Fatal(err)
	}
	if err := h.ready(t.Context()); err == nil {
		t.Fatal("a broker not started yet: ready")
	}
	if err := broker.Serve(); err != nil {
		t.Fatal(err)
	}
	if err := h.ready(t.Context()); err != nil {
		t.Fatalf("a serving broker: %v, want ready", err)
	}
	if err := broker.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.ready(t.Context()); err == nil || !strings.Contains(err.Error(), "not serving") {
		t.Errorf("a closed broker: %v, want not ready", err)
	}
}

// healthRequest sends a request to url with the given Host header (empty:
// url's) and returns the answer's status and body.
func healthRequest(t *testing.T, method, url, host string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
