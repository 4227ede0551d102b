package exampletest

import (
	"net/http"
	"testing"
)

// ExpectDNSRebindingRefused checks an example's Host allowlist from
// outside: a page of the attacker's name resolved to 127.0.0.1 gets 403,
// while the page at localhost and clients at the listen address and at ::1
// get 101. Both examples run it against their binary.
func ExpectDNSRebindingRefused(t *testing.T, p *Process) {
	t.Helper()
	port := p.Port()
	tests := []struct {
		name   string
		host   string
		origin string
		want   int
	}{
		{
			name:   "a page of the attacker's name, resolved to 127.0.0.1",
			host:   "rebind.attacker.example:" + port,
			origin: "http://rebind.attacker.example:" + port,
			want:   http.StatusForbidden,
		},
		{
			name:   "the page itself, at localhost",
			host:   "localhost:" + port,
			origin: "http://localhost:" + port,
			want:   http.StatusSwitchingProtocols,
		},
		{
			name: "a client that is not a browser, at the listen address",
			host: "127.0.0.1:" + port,
			want: http.StatusSwitchingProtocols,
		},
		{
			name: "a client at ::1",
			host: "[::1]:" + port,
			want: http.StatusSwitchingProtocols,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body, err := Handshake{From: "127.0.0.1", Addr: p.Addr, Path: "/mqtt", Host: tc.host, Origin: tc.origin}.Status()
			if err != nil {
				t.Fatal(err)
			}
			if status != tc.want {
				t.Errorf("Host %s, Origin %q: %d %q, want %d", tc.host, tc.origin, status, body, tc.want)
			}
		})
	}
}
