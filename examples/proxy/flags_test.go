package main

import (
	"strings"
	"testing"

	"github.com/mqttws/mqttws/examples/internal/exampletest"
)

func TestBadFlagsAreUsageErrors(t *testing.T) {
	upstream := []string{"-listen", "127.0.0.1:0", "-upstream", "127.0.0.1:1883"}
	tests := []struct {
		args []string
		want string // in stderr
	}{
		{args: []string{"-path", "/a b"}, want: `-path "/a b"`},
		{args: []string{"-path", "/mqtt?x=1"}, want: "query"},
		{args: []string{"-path", "mqtt"}, want: "absolute"},
		{args: []string{"-path", "/mqtt/"}, want: "clean"},
		{args: []string{"-max-conns-per-addr", "-1"}, want: "-max-conns-per-addr -1"},
		{args: []string{"-client-addr-header", "X-Client-IP"}, want: "X-Client-IP"},
		{args: []string{"-metrics-listen", "9090"}, want: "-metrics-listen"},
		{args: []string{"-metrics"}, want: "-metrics"},
		{args: []string{"-proxy-protocol", "v3"}, want: "-proxy-protocol"},
		{args: []string{"-path", "/healthz"}, want: "health checks"},
		{args: []string{"-tls-cert", "cert.pem"}, want: "-tls-cert cert.pem needs -tls-key"},
		{args: []string{"-tls-key", "key.pem"}, want: "-tls-key key.pem needs -tls-cert"},
	}
	for _, tc := range tests {
		code, stderr := exampletest.Exit(t, program.Path(t), append(upstream, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) || strings.Contains(stderr, "panic") {
			t.Errorf("proxy %q: exit status %d, stderr:\n%.600s\nwant status 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
	if code, stderr := exampletest.Exit(t, program.Path(t)); code != 2 || !strings.Contains(stderr, "-upstream is required") {
		t.Errorf("proxy without -upstream: exit status %d, stderr:\n%.600s", code, stderr)
	}
}

func TestHelpSaysWhatTheProgramIs(t *testing.T) {
	code, stderr := exampletest.Exit(t, program.Path(t), "-h")
	first, _, _ := strings.Cut(stderr, "\n")
	if code != 0 || !strings.HasPrefix(first, "proxy: a WebSocket gateway") || !strings.Contains(stderr, "Usage: proxy -upstream") {
		t.Errorf("proxy -h: exit status %d, stderr:\n%.600s\nwant status 0, a first line that says what proxy is, and its usage", code, stderr)
	}
	for _, flag := range []string{"-tls-cert", "-tls-key", "-tls-poll", "-compress"} {
		if !strings.Contains(stderr, flag) {
			t.Errorf("proxy -h says nothing of %s", flag)
		}
	}
}
