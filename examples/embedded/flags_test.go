package main

import (
	"strings"
	"testing"

	"github.com/mqttws/mqttws/examples/internal/exampletest"
)

func TestBadFlagsAreUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string // in stderr
	}{
		{args: []string{"-path", "/a b"}, want: `-path "/a b"`},
		{args: []string{"-path", "/mqtt?x=1"}, want: "query"},
		{args: []string{"-path", "mqtt"}, want: "absolute"},
		{args: []string{"-path", "/"}, want: "taken by the page"},
		{args: []string{"-path", "/index.html"}, want: "taken by the page"},
		{args: []string{"-path", "/config.js"}, want: "taken by the page"},
		{args: []string{"-path", "/{id}"}, want: `-path "/{id}"`},
		{args: []string{"-max-message", "10"}, want: "-max-message 10"},
		{args: []string{"-max-conns-per-addr", "-1"}, want: "-max-conns-per-addr -1"},
		{args: []string{"-client-addr-header", "X-Client-IP"}, want: "X-Client-IP"},
		{args: []string{"-metrics-listen", "9090"}, want: "-metrics-listen"},
		{args: []string{"-metrics"}, want: "-metrics"},
		{args: []string{"extra"}, want: `unexpected argument "extra"`},
		{args: []string{"-path", "/healthz"}, want: "health checks"},
		{args: []string{"-path", "/readyz"}, want: "health checks"},
		{args: []string{"-tls-cert", "cert.pem"}, want: "-tls-cert cert.pem needs -tls-key"},
		{args: []string{"-tls-key", "key.pem"}, want: "-tls-key key.pem needs -tls-cert"},
		{args: []string{"-tls-poll", "-1s"}, want: "-tls-poll -1s"},
	}
	for _, tc := range tests {
		code, stderr := exampletest.Exit(t, program.Path(t), append([]string{"-listen", "127.0.0.1:0"}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) || strings.Contains(stderr, "panic") {
			t.Errorf("embedded %q: exit status %d, stderr:\n%.600s\nwant status 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

func TestHelpSaysWhatTheProgramIs(t *testing.T) {
	code, stderr := exampletest.Exit(t, program.Path(t), "-h")
	first, _, _ := strings.Cut(stderr, "\n")
	if code != 0 || !strings.HasPrefix(first, "embedded: an MQTT broker") || !strings.Contains(stderr, "Usage: embedded ") {
		t.Errorf("embedded -h: exit status %d, stderr:\n%.600s\nwant status 0, a first line that says what embedded is, and its usage", code, stderr)
	}
	for _, flag := range []string{"-tls-cert", "-tls-key", "-tls-poll", "-compress"} {
		if !strings.Contains(stderr, flag) {
			t.Errorf("embedded -h says nothing of %s", flag)
		}
	}
}
