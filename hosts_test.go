package mqttws_test

import (
	"bufio"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mqttws/mqttws"
)

// rawUpgradeStatus sends an upgrade request to the server at addr with the
// given Host and extra header fields, and returns the answer's status.
func rawUpgradeStatus(t *testing.T, addr, host string, extra http.Header) int {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(testTimeout))
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/mqtt", nil)
	req.Host = host
	req.Header = upgradeHeader()
	for k, v := range extra {
		req.Header[k] = v
	}
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// TestAllowedHostsRefuseDNSRebinding: a page on the attacker's own name,
// rebound to this server's address, sends a Host and an Origin that match
// each other; only a Host allowlist tells it from a same-origin page.
func TestAllowedHostsRefuseDNSRebinding(t *testing.T) {
	cases := []struct {
		name         string
		allowedHosts []string
		host         string // PORT is the server's port
		origin       string
		status       int
	}{
		{
			name:         "RebindingHostGets403",
			allowedHosts: []string{"localhost", "127.0.0.1"},
			host:         "rebind.attacker.example:PORT",
			origin:       "http://rebind.attacker.example:PORT",
			status:       http.StatusForbidden,
		},
		{
			name:   "WithoutAllowedHostsRebindingPasses",
			host:   "rebind.attacker.example:PORT",
			origin: "http://rebind.attacker.example:PORT",
			status: http.StatusSwitchingProtocols,
		},
		{
			name:         "AllowedAddressIsServed",
			allowedHosts: []string{"localhost", "127.0.0.1"},
			host:         "127.0.0.1:PORT",
			origin:       "http://127.0.0.1:PORT",
			status:       http.StatusSwitchingProtocols,
		},
		{
			name:         "AllowedNameIsServed",
			allowedHosts: []string{"localhost", "127.0.0.1"},
			host:         "localhost:PORT",
			status:       http.StatusSwitchingProtocols,
		},
		{
			name:         "PatternWithPortMatchesThatPortOnly",
			allowedHosts: []string{"app.example.com:8443"},
			host:         "app.example.com:PORT",
			status:       http.StatusForbidden,
		},
		{
			name:         "GlobAllowsSubdomains",
			allowedHosts: []string{"*.example.com"},
			host:         "mqtt.example.com",
			status:       http.StatusSwitchingProtocols,
		},
		{
			name:         "IPv6LiteralWithoutBrackets",
			allowedHosts: []string{"::1"},
			host:         "[::1]:PORT",
			status:       http.StatusSwitchingProtocols,
		},
		{
			name:         "IPv6LiteralInBrackets",
			allowedHosts: []string{"[::1]"},
			host:         "[::1]:PORT",
			status:       http.StatusSwitchingProtocols,
		},
		{
			name:         "IPv6LiteralWithOtherPort",
			allowedHosts: []string{"[::1]:1"},
			host:         "[::1]:PORT",
			status:       http.StatusForbidden,
		},
		{
			name:         "IPv6LiteralWithItsPort",
			allowedHosts: []string{"[::1]:PORT"},
			host:         "[::1]:PORT",
			status:       http.StatusSwitchingProtocols,
		},
		{
			name:         "HostWithoutPortMatchesName",
			allowedHosts: []string{"mqtt.example.com"},
			host:         "mqtt.example.com",
			status:       http.StatusSwitchingProtocols,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			_, port, _ := net.SplitHostPort(ln.Addr().String())
			h := &mqttws.Handler{
				Backend:        mqttws.BackendFunc(echo),
				AllowedHosts:   replacePorts(tc.allowedHosts, port),
				AllowedOrigins: []string{"app.example.com"},
				Logger:         discardLogger(),
			}
			srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: h}}
			srv.Start()
			defer srv.Close()
			extra := http.Header{}
			if tc.origin != "" {
				extra.Set("Origin", replacePort(tc.origin, port))
			}
			status := rawUpgradeStatus(t, srv.Listener.Addr().String(), replacePort(tc.host, port), extra)
			if status != tc.status {
				t.Fatalf("status %d, want %d", status, tc.status)
			}
			if status == http.StatusForbidden && h.Stats().Refused["host"] != 1 {
				t.Fatalf("Stats().Refused = %v, want host: 1", h.Stats().Refused)
			}
		})
	}
}

// TestOriginSchemes: only web pages (http, https) are origins; an https
// page behind a proxy that terminates TLS is same-origin with a Host
// without a port.
func TestOriginSchemes(t *testing.T) {
	cases := []struct {
		name    string
		allowed []string
		host    string // PORT is the server's port
		origin  string
		status  int
	}{
		{
			name:   "SameOriginHTTPIsServed",
			host:   "127.0.0.1:PORT",
			origin: "http://127.0.0.1:PORT",
			status: http.StatusSwitchingProtocols,
		},
		{
			name:   "SameHostWithWsSchemeGets403",
			host:   "127.0.0.1:PORT",
			origin: "ws://127.0.0.1:PORT",
			status: http.StatusForbidden,
		},
		{
			name:    "AllowedHostWithFileSchemeGets403",
			allowed: []string{"app.example.com"},
			host:    "127.0.0.1:PORT",
			origin:  "file://app.example.com",
			status:  http.StatusForbidden,
		},
		{
			name:    "AllowedHostWithWsSchemeGets403",
			allowed: []string{"app.example.com"},
			host:    "127.0.0.1:PORT",
			origin:  "ws://app.example.com",
			status:  http.StatusForbidden,
		},
		{
			name:    "PatternWithSchemeAllowsThatScheme",
			allowed: []string{"https://app.example.com"},
			host:    "127.0.0.1:PORT",
			origin:  "https://app.example.com",
			status:  http.StatusSwitchingProtocols,
		},
		{
			name:    "PatternWithSchemeRefusesOtherScheme",
			allowed: []string{"https://app.example.com"},
			host:    "127.0.0.1:PORT",
			origin:  "http://app.example.com",
			status:  http.StatusForbidden,
		},
		{
			name:   "HTTPSPageBehindTLSProxyIsSameOrigin",
			host:   "app.example.com",
			origin: "https://app.example.com",
			status: http.StatusSwitchingProtocols,
		},
		{
			name:   "HTTPSPageOnOtherPortGets403",
			host:   "app.example.com",
			origin: "https://app.example.com:8443",
			status: http.StatusForbidden,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := &mqttws.Handler{
				Backend:        mqttws.BackendFunc(echo),
				AllowedOrigins: tc.allowed,
				Logger:         discardLogger(),
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
			extra := http.Header{"Origin": {replacePort(tc.origin, port)}}
			status := rawUpgradeStatus(t, srv.Listener.Addr().String(), replacePort(tc.host, port), extra)
			if status != tc.status {
				t.Fatalf("status %d, want %d", status, tc.status)
			}
		})
	}
}

func replacePort(s, port string) string { return strings.ReplaceAll(s, "PORT", port) }

func replacePorts(patterns []string, port string) []string {
	var out []string
	for _, p := range patterns {
		out = append(out, replacePort(p, port))
	}
	return out
}
