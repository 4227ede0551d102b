package mqttws

import (
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
)

// checkHost refuses a request for a host that is not in patterns (when
// there are any): with a DNS rebinding attack, a foreign page reaches this
// server under the attacker's host name, and its Origin matches that Host.
func checkHost(r *http.Request, patterns []string) *handshakeError {
	if len(patterns) == 0 {
		return nil
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	host := withDefaultPort(r.Host, defaultPort(scheme))
	for _, p := range patterns {
		if matchHost(p, host) {
			return nil
		}
	}
	return refuseAs("host", http.StatusForbidden, "host %q is not served here (not in the allowed hosts)", r.Host)
}

// checkOrigin applies the origin policy against cross-site WebSocket
// hijacking: a request without Origin (not from a browser) passes, a
// same-origin request passes, and any other origin passes only when it
// matches one of the patterns.
//
// Only web origins count: scheme http or https (ws, file and others are
// refused unless a pattern is "*"). Same-origin means the same host and
// port as the Host header; a Host without a port matches the default port
// of the origin's scheme, since a proxy that terminates TLS forwards https
// pages' requests over plain HTTP, often with the port left out. When the
// handler itself serves TLS, the origin must be https.
func checkOrigin(r *http.Request, patterns []string) *handshakeError {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	scheme, host, ok := parseOrigin(origin)
	if ok && r.TLS != nil && scheme != "https" {
		ok = false
	}
	if ok && strings.EqualFold(host, withDefaultPort(r.Host, defaultPort(scheme))) {
		return nil
	}
	for _, p := range patterns {
		if p == "*" || (p == "null" && origin == "null") {
			return nil
		}
		if ok && matchOrigin(p, scheme, host) {
			return nil
		}
	}
	return refuseAs("origin", http.StatusForbidden, "origin %q is not allowed (cross-site WebSocket requests must match an allowed origin pattern)", origin)
}

// parseOrigin returns the scheme and the host:port of a web origin (http or
// https), with the default port of its scheme made explicit.
func parseOrigin(origin string) (scheme, host string, ok bool) {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", "", false
	}
	return u.Scheme, withDefaultPort(u.Host, defaultPort(u.Scheme)), true
}

// matchOrigin matches an origin against a pattern of AllowedOrigins: a host
// pattern (see matchHost), optionally preceded by the one scheme it allows
// ("https://*.example.com").
func matchOrigin(pattern, scheme, host string) bool {
	if want, rest, found := strings.Cut(pattern, "://"); found {
		if !strings.EqualFold(want, scheme) {
			return false
		}
		pattern = rest
	}
	return matchHost(pattern, host)
}

func defaultPort(scheme string) string {
	if scheme == "https" {
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
//
// An IPv6 literal is matched as written, brackets optional ("::1",
// "[::1]", "[::1]:8080"), never as a glob: "[" opens a character class in
// path.Match.
func matchHost(pattern, host string) bool {
	pattern = strings.ToLower(pattern)
	name, _, _ := net.SplitHostPort(host)
	if strings.HasPrefix(pattern, "[") || strings.Count(pattern, ":") > 1 {
		if _, _, err := net.SplitHostPort(pattern); err == nil {
			return pattern == host
		}
		return strings.Trim(pattern, "[]") == name
	}
	if ok, _ := path.Match(pattern, host); ok {
		return true
	}
	ok, _ := path.Match(pattern, name)
	return ok
}
