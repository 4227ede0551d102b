package options

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path"
	"slices"
	"strings"
)

// loopbackHosts are the names of this machine that a DNS rebinding page
// cannot take: a browser sends them as Host only for pages it loaded from
// them.
var loopbackHosts = []string{"localhost", "127.0.0.1", "::1"}

// AllowedHosts returns the Host patterns an example serves
// (mqttws.Handler.AllowedHosts): the host of its listen address, the
// loopback names, and extra (the -allow-host flags). A wildcard listen
// address (0.0.0.0, ::) stands for every address of the machine's network
// interfaces. Host names a rebinding attacker could point at this server are
// not in the list unless given in extra: a page at
// http://rebind.attacker.example:8080 whose name resolves to 127.0.0.1 is
// refused.
func AllowedHosts(listen net.Addr, extra []string) ([]string, error) {
	hosts := slices.Clone(loopbackHosts)
	ip, ok := listenIP(listen)
	switch {
	case !ok:
	case ip.IsUnspecified():
		addrs, err := net.InterfaceAddrs()
		if err != nil {
			return nil, fmt.Errorf("listing the interface addresses for the allowed hosts of wildcard address %s: %w", listen, err)
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				hosts = append(hosts, p.Addr().Unmap().String())
			}
		}
	default:
		hosts = append(hosts, ip.String())
	}
	hosts = append(hosts, extra...)
	slices.Sort(hosts)
	return slices.Compact(hosts), nil
}

// listenIP returns the IP address of a listener's address.
func listenIP(a net.Addr) (netip.Addr, bool) {
	if a == nil {
		return netip.Addr{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap().WithZone(""), true
}

// guardHosts refuses with 403 the requests whose Host header matches none
// of patterns, as mqttws.Handler does for WebSocket requests.
func guardHosts(patterns []string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hostAllowed(patterns, r.Host) {
			http.Error(w, fmt.Sprintf("host %q is not served here (add it with -allow-host)", r.Host), http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// hostAllowed matches a Host header against patterns in the syntax of
// mqttws.Handler.AllowedHosts: globs (path.Match) on the host name, or on
// host:port.
func hostAllowed(patterns []string, host string) bool {
	host = strings.ToLower(host)
	name, _, err := net.SplitHostPort(host)
	if err != nil {
		name = strings.Trim(host, "[]")
	}
	for _, p := range patterns {
		p = strings.ToLower(p)
		onHost, _ := path.Match(p, host)
		onName, _ := path.Match(p, name)
		if onHost || onName {
			return true
		}
	}
	return false
}
