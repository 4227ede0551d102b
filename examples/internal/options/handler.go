package options

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/mqttws/mqttws"
)

// Handler holds the handler flags common to the examples.
type Handler struct {
	AllowOrigins      []string
	AllowHosts        []string
	MaxConns          int
	MaxStreamsPerAddr int
	MaxFrame          int64
	Ping              time.Duration
	TrustedProxies    []netip.Prefix
	ClientAddrHeader  string
	Compress          bool
}

// clientAddrHeaders are the forwarding headers mqttws can read the client's
// address from, as http.CanonicalHeaderKey spells them.
var clientAddrHeaders = []string{"X-Forwarded-For", "Forwarded", "X-Real-Ip"}

// Register defines the flags on fs.
func (o *Handler) Register(fs *flag.FlagSet) {
	fs.Func("allow-origin", "allow browser pages from origins whose host matches `PATTERN` (a glob such as *.example.com, host:port, or https://app.example.com for that scheme only; repeatable); same-origin pages and non-browser clients are always allowed", func(v string) error {
		if strings.TrimSpace(v) == "" {
			return fmt.Errorf("empty pattern")
		}
		o.AllowOrigins = append(o.AllowOrigins, v)
		return nil
	})
	fs.Func("allow-host", "also serve requests for the host `PATTERN` (a glob such as *.example.com, or host:port; repeatable): a name clients reach this server by. Requests for other hosts get 403, which defeats DNS rebinding; served without the flag: the -listen address (every interface address for 0.0.0.0 or ::), localhost, 127.0.0.1 and ::1. * serves any host", func(v string) error {
		if strings.TrimSpace(v) == "" {
			return fmt.Errorf("empty pattern")
		}
		o.AllowHosts = append(o.AllowHosts, v)
		return nil
	})
	fs.IntVar(&o.MaxConns, "max-conns", 0, "serve at most `N` WebSocket connections at once, refusing more with 503 (0: no cap)")
	// The accept cap (-max-conns-per-addr) counts TCP connections; over
	// HTTP/2 one connection carries up to 250 WebSockets, so the streams
	// need a cap of their own, by default the same number.
	fs.IntVar(&o.MaxStreamsPerAddr, "max-streams-per-addr", DefaultMaxConnsPerAddr, "serve at most `N` WebSocket connections at once per client address (found through -trusted-proxy), refusing more with 429; over HTTP/2 one TCP connection carries many (0: no cap)")
	fs.Int64Var(&o.MaxFrame, "max-frame", 0, "close connections sending a frame over `BYTES` with 1009 (0: no limit)")
	fs.DurationVar(&o.Ping, "ping", mqttws.DefaultPingInterval, "ping connections quiet for `DURATION` (keeps proxies from dropping them); 0 disables")
	fs.Func("trusted-proxy", "believe the -client-addr-header of requests from reverse proxies in `CIDR` (repeatable); other forwarding headers are ignored", func(v string) error {
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
	fs.BoolVar(&o.Compress, "compress", false, "compress messages with permessage-deflate (RFC 7692) for clients that offer it, as browsers and Node's ws do: text-like payloads over 128 bytes shrink several times on the wire, for CPU on both sides; keeps 1 KiB of history per connection (CompressionOptions.History) so that small JSON messages shrink too; see mqttws.CompressionOptions (off: messages go as they are)")
	fs.StringVar(&o.ClientAddrHeader, "client-addr-header", "X-Forwarded-For", "the forwarding header the -trusted-proxy proxies set, naming the client's address: `NAME` is X-Forwarded-For, Forwarded or X-Real-IP")
}

// Check reports flag values that make no sense.
func (o *Handler) Check() error {
	switch {
	case o.MaxConns < 0:
		return fmt.Errorf("-max-conns %d: want 0 or more", o.MaxConns)
	case o.MaxStreamsPerAddr < 0:
		return fmt.Errorf("-max-streams-per-addr %d: want 0 or more", o.MaxStreamsPerAddr)
	case o.MaxFrame < 0:
		return fmt.Errorf("-max-frame %d: want 0 or more", o.MaxFrame)
	case o.Ping < 0:
		return fmt.Errorf("-ping %v: want 0 or more", o.Ping)
	}
	for _, p := range slices.Concat(o.AllowOrigins, o.AllowHosts) {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("pattern %q: %w", p, err)
		}
	}
	if !knownHeader(o.ClientAddrHeader) {
		return fmt.Errorf("-client-addr-header %q: want X-Forwarded-For, Forwarded or X-Real-IP", o.ClientAddrHeader)
	}
	return nil
}

// knownHeader reports whether name is one of clientAddrHeaders, in any
// case.
func knownHeader(name string) bool {
	for _, h := range clientAddrHeaders {
		if http.CanonicalHeaderKey(name) == h {
			return true
		}
	}
	return false
}

// Apply sets the handler's fields from the flags. listen is the address the
// handler is served on: its host is one of the allowed hosts.
func (o *Handler) Apply(h *mqttws.Handler, listen net.Addr) error {
	hosts, err := AllowedHosts(listen, o.AllowHosts)
	if err != nil {
		return err
	}
	h.AllowedOrigins = o.AllowOrigins
	h.AllowedHosts = hosts
	h.MaxConnections = o.MaxConns
	h.MaxConnectionsPerAddr = o.MaxStreamsPerAddr
	h.MaxFrameSize = o.MaxFrame
	h.PingInterval = o.Ping
	if o.Ping == 0 {
		h.PingInterval = -1
	}
	h.TrustedProxies = o.TrustedProxies
	h.ClientAddrHeader = http.CanonicalHeaderKey(o.ClientAddrHeader)
	if o.Compress {
		// 1 KiB of history: small JSON messages, which repeat the keys of
		// the previous ones, shrink 3.7× instead of 2×.
		h.Compression = &mqttws.CompressionOptions{History: 1024}
	}
	return nil
}
