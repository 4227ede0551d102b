// Package options holds what the two examples share: the command-line flags
// that configure an mqttws.Handler, and its metrics in Prometheus format.
package options

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/mqttws/mqttws"
)

// Handler holds the handler flags common to the examples.
type Handler struct {
	AllowOrigins   []string
	MaxConns       int
	MaxFrame       int64
	Ping           time.Duration
	TrustedProxies []netip.Prefix
	Metrics        bool
}

// Register defines the flags on fs.
func (o *Handler) Register(fs *flag.FlagSet) {
	fs.Func("allow-origin", "allow browser pages from origins whose host matches `PATTERN` (a glob such as *.example.com, or host:port; repeatable); same-origin pages and non-browser clients are always allowed", func(v string) error {
		if strings.TrimSpace(v) == "" {
			return fmt.Errorf("empty pattern")
		}
		o.AllowOrigins = append(o.AllowOrigins, v)
		return nil
	})
	fs.IntVar(&o.MaxConns, "max-conns", 0, "serve at most `N` connections at once, refusing more with 503 (0: no cap)")
	fs.Int64Var(&o.MaxFrame, "max-frame", 0, "close connections sending a frame over `BYTES` with 1009 (0: no limit)")
	fs.DurationVar(&o.Ping, "ping", mqttws.DefaultPingInterval, "ping connections quiet for `DURATION` (keeps proxies from dropping them); 0 disables")
	fs.Func("trusted-proxy", "believe X-Forwarded-For/Forwarded/X-Real-IP from reverse proxies in `CIDR` (repeatable)", func(v string) error {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			a, aerr := netip.ParseAddr(v)
			if aerr != nil {
				return fmt.Errorf("want a CIDR such as 10.0.0.0/8: %w", err)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		o.TrustedProxies = append(o.TrustedProxies, p.Masked())
		return nil
	})
	fs.BoolVar(&o.Metrics, "metrics", false, "serve Prometheus metrics at /metrics on the same listener")
}

// UsageError reports a command-line mistake of program prog, with the
// flags' usage, and exits with status 2.
func UsageError(prog, msg string) {
	fmt.Fprintf(os.Stderr, "%s: %s\n", prog, msg)
	flag.Usage()
	os.Exit(2)
}

// Check reports flag values that make no sense.
func (o *Handler) Check() error {
	switch {
	case o.MaxConns < 0:
		return fmt.Errorf("-max-conns %d: want 0 or more", o.MaxConns)
	case o.MaxFrame < 0:
		return fmt.Errorf("-max-frame %d: want 0 or more", o.MaxFrame)
	case o.Ping < 0:
		return fmt.Errorf("-ping %v: want 0 or more", o.Ping)
	}
	return nil
}

// Apply sets the handler's fields from the flags.
func (o *Handler) Apply(h *mqttws.Handler) {
	h.AllowedOrigins = o.AllowOrigins
	h.MaxConnections = o.MaxConns
	h.MaxFrameSize = o.MaxFrame
	h.PingInterval = o.Ping
	if o.Ping == 0 {
		h.PingInterval = -1
	}
	h.TrustedProxies = o.TrustedProxies
}
