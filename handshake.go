package mqttws

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// DefaultSubprotocols is the subprotocol preference a Handler uses when its
// Subprotocols field is nil: "mqtt" (MQTT 3.1.1 and 5.0, MQTT-6.0.0-4), then
// "mqttv3.1" (MQTT 3.1).
func DefaultSubprotocols() []string { return []string{"mqtt", "mqttv3.1"} }

// handshakeError is a refused request, answered with a plain-text HTTP
// error before the connection is hijacked.
type handshakeError struct {
	kind   string // the reason counted in Stats.Refused
	status int
	header http.Header // extra response header fields
	reason string
}

func (e *handshakeError) Error() string { return e.reason }

// refuse refuses a malformed handshake.
func refuse(status int, format string, args ...any) *handshakeError {
	return refuseAs("bad_handshake", status, format, args...)
}

func refuseAs(kind string, status int, format string, args ...any) *handshakeError {
	return &handshakeError{kind: kind, status: status, reason: "mqttws: " + fmt.Sprintf(format, args...)}
}

// HTTPError is an HTTP answer that refuses an upgrade. Handler.Authorize
// returns one to choose the status (401, 403, 429…) and the plain-text
// reason the client gets, with extra header fields such as
// WWW-Authenticate.
type HTTPError struct {
	Status int
	Reason string
	Header http.Header
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("mqttws: refused with %d: %s", e.Status, e.Reason)
}

// authorizationRefusal turns an error of Handler.Authorize into an answer.
// Only an *HTTPError's reason is shown to the client.
func authorizationRefusal(err error) *handshakeError {
	var he *HTTPError
	if errors.As(err, &he) && he.Status >= 400 && he.Status <= 599 {
		e := refuseAs("unauthorized", he.Status, "%s", he.Reason)
		e.header = he.Header
		return e
	}
	return refuseAs("unauthorized", http.StatusForbidden, "forbidden")
}

// checkHandshake validates an upgrade request (RFC 6455 section 4.2.1) and
// picks the subprotocol, so that every refusal is an ordinary HTTP answer:
// gobwas/ws hijacks before it validates.
func checkHandshake(r *http.Request, prefs []string, allowNone bool) (string, *handshakeError) {
	if !headerHasToken(r.Header, "Upgrade", "websocket") {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			e := refuseAs("method", http.StatusMethodNotAllowed, "method %s not allowed: this endpoint takes WebSocket upgrades (GET)", r.Method)
			e.header = http.Header{"Allow": {"GET"}}
			return "", e
		}
		e := refuseAs("not_websocket", http.StatusUpgradeRequired, "this endpoint speaks MQTT over WebSocket: connect with a WebSocket client offering subprotocol %s", quoteList(prefs))
		e.header = http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}}
		return "", e
	}
	if r.ProtoMajor != 1 || r.ProtoMinor < 1 {
		return "", refuseAs("http_version", http.StatusHTTPVersionNotSupported, "WebSocket upgrade needs HTTP/1.1, the request came over %s", r.Proto)
	}
	if r.Method != http.MethodGet {
		e := refuseAs("method", http.StatusMethodNotAllowed, "WebSocket upgrade needs method GET, not %s", r.Method)
		e.header = http.Header{"Allow": {"GET"}}
		return "", e
	}
	if r.Host == "" {
		return "", refuse(http.StatusBadRequest, `bad handshake: missing "Host" header`)
	}
	if !headerHasToken(r.Header, "Connection", "upgrade") {
		return "", refuse(http.StatusBadRequest, `bad handshake: "Connection" header must contain "Upgrade"`)
	}
	if refusal := checkVersion(r, http.StatusUpgradeRequired); refusal != nil {
		return "", refusal
	}
	if !validKey(r.Header.Values("Sec-WebSocket-Key")) {
		return "", refuse(http.StatusBadRequest, `bad handshake: "Sec-WebSocket-Key" must be one base64-encoded 16-byte value`)
	}
	return selectSubprotocol(offeredSubprotocols(r.Header), prefs, allowNone)
}

// checkVersion requires Sec-WebSocket-Version 13 (RFC 6455 section 4.2.2):
// a missing one is a bad handshake; another one is refused with
// unsupported (426 Upgrade Required over HTTP/1.1; HTTP/2 has no upgrade,
// so 400 there), both with the version served.
func checkVersion(r *http.Request, unsupported int) *handshakeError {
	switch v := r.Header.Values("Sec-WebSocket-Version"); {
	case len(v) == 0:
		e := refuse(http.StatusBadRequest, `bad handshake: missing "Sec-WebSocket-Version" header`)
		e.header = http.Header{"Sec-WebSocket-Version": {"13"}}
		return e
	case len(v) > 1 || v[0] != "13":
		e := refuseAs("version", unsupported, `unsupported WebSocket version %q: this server speaks version 13`, strings.Join(v, ", "))
		e.header = http.Header{"Sec-WebSocket-Version": {"13"}}
		return e
	}
	return nil
}

// selectSubprotocol picks the first protocol of prefs the client offered.
func selectSubprotocol(offered, prefs []string, allowNone bool) (string, *handshakeError) {
	for _, p := range prefs {
		for _, o := range offered {
			if o == p {
				return p, nil
			}
		}
	}
	if len(offered) == 0 {
		if allowNone {
			return "", nil
		}
		return "", refuseAs("subprotocol", http.StatusBadRequest, "no WebSocket subprotocol offered: offer %s", quoteList(prefs))
	}
	return "", refuseAs("subprotocol", http.StatusBadRequest, "none of the offered subprotocols %q is served here: offer %s", offered, quoteList(prefs))
}

// quoteList renders names as "a" or "b" or "c".
func quoteList(names []string) string {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = strconv.Quote(n)
	}
	return strings.Join(quoted, " or ")
}

// offeredSubprotocols lists the tokens of every Sec-WebSocket-Protocol field.
func offeredSubprotocols(h http.Header) []string {
	var offered []string
	for _, v := range h.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				offered = append(offered, p)
			}
		}
	}
	return offered
}

func validKey(values []string) bool {
	if len(values) != 1 || len(values[0]) != 24 {
		return false
	}
	var nonce [18]byte
	n, err := base64.StdEncoding.Decode(nonce[:], []byte(values[0]))
	return err == nil && n == 16
}

// headerHasToken reports whether a comma-separated header field holds token,
// compared case-insensitively.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// canonicalUpgrade returns r with its handshake fields rewritten to the one
// form gobwas/ws accepts (a single "Connection: Upgrade", "Upgrade:
// websocket" and so on), once checkHandshake has validated them: RFC 7230
// allows a field to be split over several lines and other tokens beside
// ("Connection: keep-alive, Upgrade"; "Upgrade: h2c, websocket"), which
// gobwas/ws would answer with 400 after hijacking the connection.
// Sec-WebSocket-Extensions is left out: the handler negotiates
// permessage-deflate itself (negotiateDeflate), the same way for HTTP/1.1
// and HTTP/2, and gobwas/ws must accept no extension of its own.
func canonicalUpgrade(r *http.Request, subprotocol string) *http.Request {
	header := http.Header{
		"Connection":            {"Upgrade"},
		"Upgrade":               {"websocket"},
		"Sec-Websocket-Version": {"13"},
		"Sec-Websocket-Key":     {r.Header.Get("Sec-WebSocket-Key")},
	}
	if subprotocol != "" {
		header["Sec-Websocket-Protocol"] = []string{subprotocol}
	}
	c := *r
	c.Header = header
	return &c
}
