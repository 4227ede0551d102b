package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/mqttws/mqttws/examples/internal/exampletest"
)

func TestCompressNegotiatesPermessageDeflate(t *testing.T) {
	const offer = "permessage-deflate; client_max_window_bits" // as browsers offer it
	tests := []struct {
		name  string
		flags []string
		want  string // Sec-WebSocket-Extensions of the answer
	}{
		{
			name: "off by default",
		},
		{
			name:  "-compress",
			flags: []string{"-compress"},
			want:  "permessage-deflate",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := start(t, tc.flags...)
			status, header, body, err := exampletest.Handshake{From: "127.0.0.1", Addr: p.Addr, Path: "/mqtt", Extensions: offer}.Answer()
			if err != nil || status != http.StatusSwitchingProtocols {
				t.Fatalf("handshake offering %q: %d %q %v, want 101", offer, status, body, err)
			}
			got := header.Get("Sec-WebSocket-Extensions")
			if !strings.HasPrefix(got, tc.want) || (tc.want == "" && got != "") {
				t.Errorf("Sec-WebSocket-Extensions: %q, want %q", got, tc.want)
			}
		})
	}
}
