package options_test

import (
	"net"
	"slices"
	"testing"

	"github.com/mqttws/mqttws/examples/internal/options"
)

func TestAllowedHostsAreTheListenAddressLoopbackAndFlags(t *testing.T) {
	tests := []struct {
		name   string
		listen string
		extra  []string
		want   []string
	}{
		{
			name:   "loopback listener",
			listen: "127.0.0.1:8080",
			want:   []string{"127.0.0.1", "::1", "localhost"},
		},
		{
			name:   "another address, with -allow-host",
			listen: "192.0.2.7:8080",
			extra:  []string{"app.example.com", "*.example.org"},
			want:   []string{"*.example.org", "127.0.0.1", "192.0.2.7", "::1", "app.example.com", "localhost"},
		},
		{
			name:   "IPv6 listener",
			listen: "[2001:db8::7]:8080",
			want:   []string{"127.0.0.1", "2001:db8::7", "::1", "localhost"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := options.AllowedHosts(net.TCPAddrFromAddrPort(mustAddrPort(t, tc.listen)), tc.extra)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("AllowedHosts(%s, %q) = %q, want %q", tc.listen, tc.extra, got, tc.want)
			}
		})
	}
}

func TestAllowedHostsOfAWildcardListenerAreTheInterfaceAddresses(t *testing.T) {
	got, err := options.AllowedHosts(&net.TCPAddr{IP: net.IPv4zero, Port: 8080}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"127.0.0.1", "localhost"} {
		if !slices.Contains(got, want) {
			t.Errorf("AllowedHosts(0.0.0.0:8080) = %q, without %q", got, want)
		}
	}
	for _, h := range got {
		if h == "0.0.0.0" || h == "*" {
			t.Errorf("AllowedHosts(0.0.0.0:8080) = %q, with %q: any host would pass", got, h)
		}
	}
}
