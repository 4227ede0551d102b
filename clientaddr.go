package mqttws

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// clientAddr returns the client's address: the TCP peer, unless the peer is
// a trusted proxy, in which case the forwarding header the proxies set
// (header: X-Forwarded-For, Forwarded as in RFC 7239, or X-Real-IP) is walked
// from the right (the hop the peer itself added) to the first address that
// is not a trusted proxy. Only that header is read: a client could send the
// others through a proxy that leaves them alone. Headers from untrusted
// peers are ignored.
func clientAddr(peer net.Addr, h http.Header, trusted []netip.Prefix, header string) net.Addr {
	if len(trusted) == 0 {
		return peer
	}
	peerAP, ok := addrPort(peer)
	if !ok || !isTrusted(peerAP.Addr(), trusted) {
		return peer
	}
	var hops []string
	switch http.CanonicalHeaderKey(header) {
	case "Forwarded":
		hops = forwardedFor(h.Values("Forwarded"))
	case "X-Real-Ip":
		// One address, not a list; the proxy's own field is the last.
		if v := h.Values("X-Real-Ip"); len(v) > 0 {
			hops = []string{strings.TrimSpace(v[len(v)-1])}
		}
	default:
		hops = listTokens(h.Values("X-Forwarded-For"))
	}
	client := peerAP
	for i := len(hops) - 1; i >= 0; i-- {
		ap, ok := parseHop(hops[i])
		if !ok {
			// An unknown or obfuscated hop: what lies left of it cannot be
			// trusted, and it is no address to report.
			break
		}
		client = ap
		if !isTrusted(ap.Addr(), trusted) {
			break
		}
	}
	if client == peerAP {
		return peer
	}
	return net.TCPAddrFromAddrPort(client)
}

func addrPort(a net.Addr) (netip.AddrPort, bool) {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	ap, err := netip.ParseAddrPort(a.String())
	return ap, err == nil
}

// sameAddr reports whether a and b are the same IP address and port.
func sameAddr(a, b net.Addr) bool {
	ap, ok := addrPort(a)
	bp, ok2 := addrPort(b)
	return ok && ok2 && ap == bp
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	a = a.Unmap()
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseHop parses one hop: an IPv4 or IPv6 address, with or without a port,
// IPv6 possibly in brackets. The port is 0 when absent.
func parseHop(s string) (netip.AddrPort, bool) {
	s = strings.Trim(strings.TrimSpace(s), `"`)
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	if err != nil || a.Zone() != "" {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.Unmap(), 0), true
}

// listTokens splits comma-separated header values, in order.
func listTokens(values []string) []string {
	var out []string
	for _, v := range values {
		for _, t := range strings.Split(v, ",") {
			out = append(out, strings.TrimSpace(t))
		}
	}
	return out
}

// forwardedFor returns the for= parameter of each element of Forwarded
// headers, in order; an element without one yields "" (an unknown hop).
func forwardedFor(values []string) []string {
	var out []string
	for _, element := range listTokens(values) {
		var hop string
		for _, pair := range strings.Split(element, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if ok && strings.EqualFold(k, "for") {
				hop = v
			}
		}
		out = append(out, hop)
	}
	return out
}
