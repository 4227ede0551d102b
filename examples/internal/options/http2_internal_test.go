package options

import "testing"

func TestHTTP2WebSocketsNeedTLSAndTheGODEBUGSetting(t *testing.T) {
	tests := []struct {
		tls     bool
		godebug string
		want    bool
	}{
		{tls: false, godebug: "http2xconnect=1", want: false},
		{tls: true, godebug: "", want: false},
		{tls: true, godebug: "http2xconnect=0", want: false},
		{tls: true, godebug: "http2xconnect=1", want: true},
		{tls: true, godebug: "madvdontneed=1,http2xconnect=1", want: true},
		{tls: true, godebug: "http2xconnect=1,http2server=0", want: false},
	}
	for _, tc := range tests {
		if got, why := http2WebSockets(tc.tls, tc.godebug); got != tc.want || why == "" {
			t.Errorf("TLS %v, GODEBUG=%q: %v (%q), want %v and a reason", tc.tls, tc.godebug, got, why, tc.want)
		}
	}
}
