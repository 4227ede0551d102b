package options_test

import (
	"flag"
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/mqttws/mqttws/examples/internal/options"
)

func mustAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// parse registers the examples' shared flags on a new flag set, parses args
// and checks the values, as the examples do.
func parse(args ...string) (options.Handler, options.Server, error) {
	var h options.Handler
	var s options.Server
	fs := flag.NewFlagSet("example", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	h.Register(fs)
	s.Register(fs)
	if err := fs.Parse(args); err != nil {
		return h, s, err
	}
	if err := h.Check(); err != nil {
		return h, s, err
	}
	return h, s, s.Check()
}

func TestFlagDefaults(t *testing.T) {
	h, s, err := parse()
	if err != nil {
		t.Fatal(err)
	}
	if s.MaxConnsPerAddr != options.DefaultMaxConnsPerAddr || s.MetricsListen != "" {
		t.Errorf("-max-conns-per-addr %d, -metrics-listen %q by default; want %d and none", s.MaxConnsPerAddr, s.MetricsListen, options.DefaultMaxConnsPerAddr)
	}
	if h.MaxStreamsPerAddr != options.DefaultMaxConnsPerAddr || h.ClientAddrHeader != "X-Forwarded-For" || len(h.AllowHosts) != 0 {
		t.Errorf("-max-streams-per-addr %d, -client-addr-header %q, -allow-host %q by default; want %d, X-Forwarded-For and none", h.MaxStreamsPerAddr, h.ClientAddrHeader, h.AllowHosts, options.DefaultMaxConnsPerAddr)
	}
}

func TestFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string // in the error
	}{
		{args: []string{"-max-conns-per-addr", "-1"}, want: "-max-conns-per-addr -1"},
		{args: []string{"-max-streams-per-addr", "-1"}, want: "-max-streams-per-addr -1"},
		{args: []string{"-metrics-listen", "9090"}, want: "-metrics-listen"},
		{args: []string{"-client-addr-header", "X-Client-IP"}, want: "X-Client-IP"},
		{args: []string{"-allow-host", ""}, want: "empty pattern"},
		{args: []string{"-allow-host", "[a-"}, want: "[a-"},
		{args: []string{"-metrics"}, want: "-metrics"},
		{args: []string{"-trusted-proxy", "nonsense"}, want: "CIDR"},
	}
	for _, tc := range tests {
		_, _, err := parse(tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("flags %q: error %v, want one about %q", tc.args, err, tc.want)
		}
	}
}

func TestClientAddrHeaderTakesTheThreeHeaders(t *testing.T) {
	for _, name := range []string{"X-Forwarded-For", "forwarded", "X-Real-IP", "x-real-ip"} {
		if _, _, err := parse("-client-addr-header", name); err != nil {
			t.Errorf("-client-addr-header %s: %v", name, err)
		}
	}
}
