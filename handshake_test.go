package mqttws_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mqttws/mqttws"
)

const validKey = "dGhlIHNhbXBsZSBub25jZQ=="

func upgradeHeader() http.Header {
	return http.Header{
		"Upgrade":                {"websocket"},
		"Connection":             {"Upgrade"},
		"Sec-Websocket-Key":      {validKey},
		"Sec-Websocket-Version":  {"13"},
		"Sec-Websocket-Protocol": {"mqtt"},
	}
}

func withHeader(name string, values ...string) http.Header {
	h := upgradeHeader()
	if values == nil {
		h.Del(name)
	} else {
		h[http.CanonicalHeaderKey(name)] = values
	}
	return h
}

// TestHandshake checks how the handler answers each kind of request: refused
// requests get a plain-text HTTP error and are never hijacked, and only a
// subprotocol the client offered is ever echoed.
func TestHandshake(t *testing.T) {
	cases := []struct {
		name         string
		subprotocols []string
		allowNone    bool
		method       string
		header       http.Header
		status       int
		subprotocol  string
		replyHeaders map[string]string
	}{
		{
			name:         "PlainGetGets426WithUpgradeWebsocket",
			method:       http.MethodGet,
			header:       http.Header{},
			status:       http.StatusUpgradeRequired,
			replyHeaders: map[string]string{"Upgrade": "websocket"},
		},
		{
			name:         "PostGets405",
			method:       http.MethodPost,
			header:       http.Header{},
			status:       http.StatusMethodNotAllowed,
			replyHeaders: map[string]string{"Allow": "GET"},
		},
		{
			name:   "UpgradeWithPostGets405",
			method: http.MethodPost,
			header: upgradeHeader(),
			status: http.StatusMethodNotAllowed,
		},
		{
			name:   "MissingConnectionUpgradeGets400",
			method: http.MethodGet,
			header: withHeader("Connection", "keep-alive"),
			status: http.StatusBadRequest,
		},
		{
			name:   "MissingKeyGets400",
			method: http.MethodGet,
			header: withHeader("Sec-WebSocket-Key"),
			status: http.StatusBadRequest,
		},
		{
			name:   "KeyNotBase64Of16BytesGets400",
			method: http.MethodGet,
			header: withHeader("Sec-WebSocket-Key", "!!!!!!!!!!!!!!!!!!!!!!!!"),
			status: http.StatusBadRequest,
		},
		{
			name:   "MissingVersionGets400",
			method: http.MethodGet,
			header: withHeader("Sec-WebSocket-Version"),
			status: http.StatusBadRequest,
		},
		{
			name:         "WrongVersionGets426WithVersion13",
			method:       http.MethodGet,
			header:       withHeader("Sec-WebSocket-Version", "8"),
			status:       http.StatusUpgradeRequired,
			replyHeaders: map[string]string{"Sec-Websocket-Version": "13"},
		},
		{
			name:   "NoSubprotocolGets400ByDefault",
			method: http.MethodGet,
			header: withHeader("Sec-WebSocket-Protocol"),
			status: http.StatusBadRequest,
		},
		{
			name:        "NoSubprotocolAcceptedWhenAllowed",
			allowNone:   true,
			method:      http.MethodGet,
			header:      withHeader("Sec-WebSocket-Protocol"),
			status:      http.StatusSwitchingProtocols,
			subprotocol: "",
		},
		{
			name:      "UnknownSubprotocolGets400EvenWhenNoneIsAllowed",
			allowNone: true,
			method:    http.MethodGet,
			header:    withHeader("Sec-WebSocket-Protocol", "stomp, wamp"),
			status:    http.StatusBadRequest,
		},
		{
			name:        "MQTT31ClientGetsMqttv31",
			method:      http.MethodGet,
			header:      withHeader("Sec-WebSocket-Protocol", "mqttv3.1"),
			status:      http.StatusSwitchingProtocols,
			subprotocol: "mqttv3.1",
		},
		{
			name:        "ServerPreferenceWinsAmongOffered",
			method:      http.MethodGet,
			header:      withHeader("Sec-WebSocket-Protocol", "mqttv3.1, mqtt"),
			status:      http.StatusSwitchingProtocols,
			subprotocol: "mqtt",
		},
		{
			name:        "OfferSplitOverSeveralFields",
			method:      http.MethodGet,
			header:      withHeader("Sec-WebSocket-Protocol", "stomp", "mqttv3.1"),
			status:      http.StatusSwitchingProtocols,
			subprotocol: "mqttv3.1",
		},
		{
			name:         "ConfiguredPreferenceList",
			subprotocols: []string{"mqttv3.1", "mqtt"},
			method:       http.MethodGet,
			header:       withHeader("Sec-WebSocket-Protocol", "mqtt, mqttv3.1"),
			status:       http.StatusSwitchingProtocols,
			subprotocol:  "mqttv3.1",
		},
		{
			name:         "ProtocolOutsideConfiguredListGets400",
			subprotocols: []string{"mqtt"},
			method:       http.MethodGet,
			header:       withHeader("Sec-WebSocket-Protocol", "mqttv3.1"),
			status:       http.StatusBadRequest,
		},
		{
			name:        "HeaderTokensAreCaseInsensitive",
			method:      http.MethodGet,
			header:      withHeader("Upgrade", "WebSocket"),
			status:      http.StatusSwitchingProtocols,
			subprotocol: "mqtt",
		},
		// RFC 7230 section 3.2.2: a list may be split over several fields,
		// and other tokens may stand beside the ones that matter.
		{
			name:        "ConnectionKeepAliveUpgradeIsServed",
			method:      http.MethodGet,
			header:      withHeader("Connection", "keep-alive, Upgrade"),
			status:      http.StatusSwitchingProtocols,
			subprotocol: "mqtt",
		},
		{
			name:        "ConnectionAsTwoFieldsIsServed",
			method:      http.MethodGet,
			header:      withHeader("Connection", "keep-alive", "Upgrade"),
			status:      http.StatusSwitchingProtocols,
			subprotocol: "mqtt",
		},
		{
			name:        "UpgradeListingH2cFirstIsServed",
			method:      http.MethodGet,
			header:      withHeader("Upgrade", "h2c, websocket"),
			status:      http.StatusSwitchingProtocols,
			subprotocol: "mqtt",
		},
		{
			name:        "UpgradeAsTwoFieldsIsServed",
			method:      http.MethodGet,
			header:      withHeader("Upgrade", "h2c", "websocket"),
			status:      http.StatusSwitchingProtocols,
			subprotocol: "mqtt",
		},
		{
			name:        "ProtocolListWithOddSpacingIsServed",
			method:      http.MethodGet,
			header:      withHeader("Sec-WebSocket-Protocol", " mqttv3.1 ,mqtt,  "),
			status:      http.StatusSwitchingProtocols,
			subprotocol: "mqtt",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := &mqttws.Handler{
				Backend:            mqttws.BackendFunc(echo),
				Subprotocols:       tc.subprotocols,
				AllowNoSubprotocol: tc.allowNone,
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			defer func() { _ = h.Shutdown(context.Background()) }()

			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(testTimeout))
			req, _ := http.NewRequest(tc.method, srv.URL+"/mqtt", nil)
			req.Header = tc.header
			if err := req.Write(conn); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tc.status)
			}
			if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != tc.subprotocol {
				t.Errorf("Sec-WebSocket-Protocol %q, want %q", got, tc.subprotocol)
			}
			for k, v := range tc.replyHeaders {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			if tc.status == http.StatusSwitchingProtocols {
				// What passes the handler's checks upgrades: gobwas/ws must
				// not refuse it after the hijack.
				if n := h.Stats().Refused["upgrade_failed"]; n != 0 {
					t.Fatalf("upgrade_failed = %d, want 0", n)
				}
				return
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") || !strings.Contains(string(body), "mqttws: ") {
				t.Errorf("refusal %q of type %q, want a plain-text reason", body, ct)
			}
			// A refused request leaves the connection to net/http: a second
			// request on it is answered.
			if resp.Close {
				return
			}
			req2, _ := http.NewRequest(http.MethodGet, srv.URL+"/mqtt", nil)
			if err := req2.Write(conn); err != nil {
				t.Fatal(err)
			}
			resp2, err := http.ReadResponse(bufio.NewReader(io.MultiReader(resp.Body, conn)), req2)
			if err != nil || resp2.StatusCode != http.StatusUpgradeRequired {
				t.Fatalf("second request on the connection: %v %v", resp2, err)
			}
		})
	}
}

func TestHandlerWithoutBackendGets500(t *testing.T) {
	srv := httptest.NewServer(&mqttws.Handler{})
	defer srv.Close()
	_, _, _, err := (&ws.Dialer{Protocols: []string{"mqtt"}}).Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"))
	if err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("dial: %v, want a 500 refusal", err)
	}
}

func TestWriterThatCannotHijackGetsClearError(t *testing.T) {
	h := &mqttws.Handler{Backend: mqttws.BackendFunc(echo)}
	req := httptest.NewRequest(http.MethodGet, "/mqtt", nil)
	req.Header = upgradeHeader()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "hijack") {
		t.Fatalf("got %d %q, want 500 saying the writer cannot hijack", rec.Code, rec.Body)
	}
}

// TestNonWebSocketRequestOverHTTP2GetsClearError: over HTTP/2 a WebSocket
// is an extended CONNECT (RFC 8441), never an Upgrade.
func TestNonWebSocketRequestOverHTTP2GetsClearError(t *testing.T) {
	h := &mqttws.Handler{Backend: mqttws.BackendFunc(echo), Logger: discardLogger()}
	req := httptest.NewRequest(http.MethodGet, "/mqtt", nil)
	req.Header = upgradeHeader()
	req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/2.0", 2, 0
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "extended CONNECT") {
		t.Fatalf("got %d %q, want 400 asking for an extended CONNECT", rec.Code, rec.Body)
	}
}

func TestHTTP10RequestGetsClearError(t *testing.T) {
	h := &mqttws.Handler{Backend: mqttws.BackendFunc(echo), Logger: discardLogger()}
	req := httptest.NewRequest(http.MethodGet, "/mqtt", nil)
	req.Header = upgradeHeader()
	req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/1.0", 1, 0
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusHTTPVersionNotSupported || !strings.Contains(rec.Body.String(), "HTTP/1.1") {
		t.Fatalf("got %d %q, want 505 asking for HTTP/1.1", rec.Code, rec.Body)
	}
}

// TestBytesSentWithTheHandshakeAreKept sends the upgrade request and the
// first frames in one write, so that net/http has buffered them before the
// hijack.
func TestBytesSentWithTheHandshakeAreKept(t *testing.T) {
	rec := newRecorder()
	url := serve(t, &mqttws.Handler{Backend: rec})
	conn, err := net.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/mqtt"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(testTimeout))
	payload := []byte("connect-packet-bytes")
	var req strings.Builder
	req.WriteString("GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n")
	req.WriteString("Sec-WebSocket-Key: " + validKey + "\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n")
	msg := append([]byte(req.String()), binaryFrame(payload).bytes()...)
	msg = append(msg, frame{op: ws.OpClose, payload: closeBody(1000, "")}.bytes()...)
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	got, _ := rec.wait(t)
	if string(got) != string(payload) {
		t.Fatalf("backend read %q, want %q", got, payload)
	}
}
