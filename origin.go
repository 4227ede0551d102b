package mqttws

import (
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
)

// checkOrigin applies the origin policy against cross-site WebSocket
// hijacking: a request without Origin (not from a browser) passes, a
// same-origin request passes, and any other origin passes only when its host
// matches one of the patterns.
func checkOrigin(r *http.Request, patterns []string) *handshakeError {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	host, ok := originHost(origin)
	if ok && strings.EqualFold(host, withDefaultPort(r.Host, defaultPortOf(r))) {
		return nil
	}
	for _, p := range patterns {
		if p == "*" || (p == "null" && origin == "null") {
			return nil
		}
		if ok && matchHost(p, host) {
			return nil
		}
	}
	return refuseAs("origin", http.StatusForbidden, "origin %q is not allowed (cross-site WebSocket requests must match an allowed origin pattern)", origin)
}

// originHost returns the host[:port] of an Origin value, with the default
// port of its scheme made explicit.
func originHost(origin string) (string, bool) {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return "", false
	}
	port := "80"
	if u.Scheme == "https" || u.Scheme == "wss" {
		port = "443"
	}
	return withDefaultPort(u.Host, port), true
}

func defaultPortOf(r *http.Request) string {
	if r.TLS != nil {
		return "443"
	}
	return "80"
}

func withDefaultPort(host, port string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return strings.ToLower(host)
	}
	return strings.ToLower(net.JoinHostPort(strings.Trim(host, "[]"), port))
}

// matchHost matches host ("name:port") against a pattern: a glob (path.Match
// syntax, e.g. "*.example.com") on the name alone, or on "name:port" when the
// pattern has a port.
func matchHost(pattern, host string) bool {
	pattern = strings.ToLower(pattern)
	name, _, _ := net.SplitHostPort(host)
	if ok, _ := path.Match(pattern, host); ok {
		return true
	}
	ok, _ := path.Match(pattern, name)
	return ok
}
