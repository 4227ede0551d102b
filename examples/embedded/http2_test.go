package main

import (
	"testing"
	"time"

	"github.com/mqttws/mqttws/examples/internal/exampletest"
)

func TestStartSaysWhetherWebSocketsGoOverHTTP2(t *testing.T) {
	files, _ := exampletest.NewCertFiles(t)
	tlsFlags := []string{"-tls-cert", files.Cert, "-tls-key", files.Key}
	tests := []struct {
		name  string
		env   []string
		flags []string
		want  string
	}{
		{
			name: "no TLS",
			env:  []string{"GODEBUG=http2xconnect=1"},
			want: `msg="WebSocket over HTTP/2: off" why="no TLS`,
		},
		{
			name:  "TLS without the GODEBUG setting",
			env:   []string{"GODEBUG="},
			flags: tlsFlags,
			want:  `msg="WebSocket over HTTP/2: off" why="pages are served over HTTP/2 and WebSockets over HTTP/1.1: start the program with GODEBUG=http2xconnect=1`,
		},
		{
			name:  "TLS and GODEBUG=http2xconnect=1",
			env:   []string{"GODEBUG=http2xconnect=1"},
			flags: tlsFlags,
			want:  `msg="WebSocket over HTTP/2: on"`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := exampletest.StartEnv(t, tc.env, program.Path(t), append([]string{"-listen", "127.0.0.1:0"}, tc.flags...)...)
			p.WaitLog(t, tc.want, 5*time.Second)
		})
	}
}
