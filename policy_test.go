package mqttws_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mqttws/mqttws"
)

// upgradeStatus dials url with extra request header fields and returns the
// HTTP status of the answer (101 on success) and the refusal's body.
func upgradeStatus(t *testing.T, url string, header http.Header) (int, string) {
	t.Helper()
	d := ws.Dialer{Protocols: []string{"mqtt"}, Header: ws.HandshakeHeaderHTTP(header)}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	conn, _, _, err := d.Dial(ctx, url)
	if err == nil {
		_ = conn.Close()
		return http.StatusSwitchingProtocols, ""
	}
	var se ws.StatusError
	if errors.As(err, &se) {
		return int(se), err.Error()
	}
	t.Fatalf("dial: %v", err)
	return 0, ""
}

func TestOriginPolicy(t *testing.T) {
	cases := []struct {
		name    string
		allowed []string
		origin  string // "" sends none; "SELF" is the server's own origin
		status  int
	}{
		{
			name:   "NoOriginIsAllowed",
			origin: "",
			status: http.StatusSwitchingProtocols,
		},
		{
			name:   "SameOriginIsAllowed",
			origin: "SELF",
			status: http.StatusSwitchingProtocols,
		},
		{
			name:   "ForeignOriginGets403",
			origin: "https://evil.example",
			status: http.StatusForbidden,
		},
		{
			name:   "SameHostOtherPortGets403",
			origin: "http://127.0.0.1:1",
			status: http.StatusForbidden,
		},
		{
			name:    "GlobOnHostNameAllows",
			allowed: []string{"*.example.com"},
			origin:  "https://app.example.com",
			status:  http.StatusSwitchingProtocols,
		},
		{
			name:    "GlobDoesNotMatchTheBareDomain",
			allowed: []string{"*.example.com"},
			origin:  "https://example.com.evil.net",
			status:  http.StatusForbidden,
		},
		{
			name:    "PatternWithPortMatchesThatPortOnly",
			allowed: []string{"localhost:3000"},
			origin:  "http://localhost:3001",
			status:  http.StatusForbidden,
		},
		{
			name:    "PatternWithPortAllows",
			allowed: []string{"localhost:3000"},
			origin:  "http://localhost:3000",
			status:  http.StatusSwitchingProtocols,
		},
		{
			name:    "StarAllowsAll",
			allowed: []string{"*"},
			origin:  "https://anything.example",
			status:  http.StatusSwitchingProtocols,
		},
		{
			name:   "NullOriginGets403",
			origin: "null",
			status: http.StatusForbidden,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := &mqttws.Handler{Backend: mqttws.BackendFunc(echo), AllowedOrigins: tc.allowed}
			url := serve(t, h)
			header := http.Header{}
			switch tc.origin {
			case "":
			case "SELF":
				header.Set("Origin", "http://"+strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/mqtt"))
			default:
				header.Set("Origin", tc.origin)
			}
			status, body := upgradeStatus(t, url, header)
			if status != tc.status {
				t.Fatalf("status %d (%s), want %d", status, body, tc.status)
			}
			if status == http.StatusForbidden && h.Stats().Refused["origin"] != 1 {
				t.Fatalf("Stats().Refused = %v, want origin: 1", h.Stats().Refused)
			}
		})
	}
}

type identityKey struct{}

func TestAuthorize(t *testing.T) {
	identity := make(chan string, 1)
	h := &mqttws.Handler{
		Authorize: func(r *http.Request) (context.Context, error) {
			switch r.URL.Query().Get("token") {
			case "good":
				return context.WithValue(r.Context(), identityKey{}, "alice"), nil
			case "":
				return nil, &mqttws.HTTPError{Status: http.StatusUnauthorized, Reason: "token required", Header: http.Header{"Www-Authenticate": {"Bearer"}}}
			default:
				return nil, errors.New("internal detail that must not leak")
			}
		},
		Backend: mqttws.BackendFunc(func(ctx context.Context, c net.Conn) error {
			who, _ := ctx.Value(identityKey{}).(string)
			identity <- who
			_, err := io.Copy(io.Discard, c)
			return err
		}),
	}
	url := serve(t, h)

	if status, body := upgradeStatus(t, url, nil); status != http.StatusUnauthorized {
		t.Fatalf("no token: %d %s, want 401", status, body)
	}
	status, body := upgradeStatus(t, url+"?token=bad", nil)
	if status != http.StatusForbidden || strings.Contains(body, "internal") {
		t.Fatalf("bad token: %d %q, want 403 without the error's text", status, body)
	}
	c := dial(t, url+"?token=good")
	select {
	case who := <-identity:
		if who != "alice" {
			t.Fatalf("backend saw identity %q, want alice", who)
		}
	case <-time.After(testTimeout):
		t.Fatal("backend not called")
	}
	c.send(frame{op: ws.OpClose, payload: closeBody(1000, "")})
	c.expectClose(mqttws.CloseNormal)
	if got := h.Stats().Refused["unauthorized"]; got != 2 {
		t.Fatalf("Stats().Refused[unauthorized] = %d, want 2", got)
	}
}

func TestRemoteAddrFromTrustedProxies(t *testing.T) {
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	proxies := append([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, loopback...)
	cases := []struct {
		name       string
		trusted    []netip.Prefix
		addrHeader string
		header     http.Header
		want       string // "" means the TCP peer
	}{
		{
			name:   "HeadersIgnoredWithoutTrustedProxies",
			header: http.Header{"X-Forwarded-For": {"203.0.113.9"}},
			want:   "",
		},
		{
			name:    "HeadersIgnoredFromAnUntrustedPeer",
			trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			header:  http.Header{"X-Forwarded-For": {"203.0.113.9"}},
			want:    "",
		},
		{
			name:    "XForwardedForFromATrustedPeer",
			trusted: loopback,
			header:  http.Header{"X-Forwarded-For": {"203.0.113.9"}},
			want:    "203.0.113.9:0",
		},
		{
			name:    "WalkFromTheRightStopsAtTheFirstUntrustedHop",
			trusted: proxies,
			header:  http.Header{"X-Forwarded-For": {"6.6.6.6, 203.0.113.9", "10.1.2.3"}},
			want:    "203.0.113.9:0",
		},
		{
			name:    "SpoofedLeftmostHopIsNotBelieved",
			trusted: loopback,
			header:  http.Header{"X-Forwarded-For": {"1.2.3.4, 198.51.100.7"}},
			want:    "198.51.100.7:0",
		},
		{
			name:    "AllHopsTrustedGivesTheLeftmost",
			trusted: proxies,
			header:  http.Header{"X-Forwarded-For": {"10.0.0.1, 10.0.0.2"}},
			want:    "10.0.0.1:0",
		},
		{
			name:       "ForwardedWhenConfigured",
			trusted:    loopback,
			addrHeader: "Forwarded",
			header: http.Header{
				"Forwarded":       {`for=192.0.2.60;proto=https, for="[2001:db8::1]:4711"`},
				"X-Forwarded-For": {"203.0.113.9"},
			},
			want: "[2001:db8::1]:4711",
		},
		{
			name:    "ClientSentForwardedIsIgnoredBehindAnXForwardedForProxy",
			trusted: loopback,
			header: http.Header{
				"Forwarded":       {"for=1.2.3.4"},
				"X-Forwarded-For": {"203.0.113.9"},
			},
			want: "203.0.113.9:0",
		},
		{
			name:       "ObfuscatedHopStopsTheWalk",
			trusted:    loopback,
			addrHeader: "Forwarded",
			header:     http.Header{"Forwarded": {"for=192.0.2.60, for=_hidden"}},
			want:       "",
		},
		{
			name:       "XRealIPWhenConfigured",
			trusted:    loopback,
			addrHeader: "X-Real-IP",
			header:     http.Header{"X-Real-Ip": {"192.0.2.44"}, "X-Forwarded-For": {"6.6.6.6"}},
			want:       "192.0.2.44:0",
		},
		{
			name:    "GarbageIsIgnored",
			trusted: loopback,
			header:  http.Header{"X-Forwarded-For": {"not an address"}},
			want:    "",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			seen := make(chan string, 1)
			h := &mqttws.Handler{
				TrustedProxies:   tc.trusted,
				ClientAddrHeader: tc.addrHeader,
				Backend: mqttws.BackendFunc(func(_ context.Context, c net.Conn) error {
					seen <- c.RemoteAddr().String()
					return nil
				}),
			}
			url := serve(t, h)
			d := ws.Dialer{Protocols: []string{"mqtt"}, Header: ws.HandshakeHeaderHTTP(tc.header)}
			conn, _, _, err := d.Dial(context.Background(), url)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			want := tc.want
			if want == "" {
				want = conn.LocalAddr().String()
			}
			select {
			case got := <-seen:
				if got != want {
					t.Fatalf("RemoteAddr %s, want %s", got, want)
				}
			case <-time.After(testTimeout):
				t.Fatal("backend not called")
			}
		})
	}
}

func TestMaxConnectionsRefusesWith503AndRetryAfter(t *testing.T) {
	t.Parallel()
	h := &mqttws.Handler{Backend: newRecorderFunc(), MaxConnections: 2}
	url := serve(t, h)
	c1, c2 := dial(t, url), dial(t, url)
	status, body := upgradeStatus(t, url, nil)
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "503") {
		t.Fatalf("third connection: %d %s, want 503", status, body)
	}
	if h.Stats().Refused["max_connections"] != 1 {
		t.Fatalf("Stats().Refused = %v", h.Stats().Refused)
	}
	c1.send(frame{op: ws.OpClose, payload: closeBody(1000, "")})
	c1.expectClose(mqttws.CloseNormal)
	deadline := time.Now().Add(testTimeout)
	for h.Stats().Active > 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	dial(t, url)
	_ = c2
}

func TestRetryAfterHeaderOnRefusalForLoad(t *testing.T) {
	t.Parallel()
	h := &mqttws.Handler{Backend: newRecorderFunc(), MaxConnections: 1}
	url := serve(t, h)
	dial(t, url)
	req, _ := http.NewRequest(http.MethodGet, "http"+strings.TrimPrefix(url, "ws"), nil)
	req.Header = upgradeHeader()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("got %d with Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

func TestStatsCountTraffic(t *testing.T) {
	t.Parallel()
	h := &mqttws.Handler{Backend: mqttws.BackendFunc(echo)}
	url := serve(t, h)
	c := dial(t, url)
	c.send(binaryFrame([]byte("hello")), binaryFrame([]byte("world!")))
	c.readData(11)
	// The echo's counters move just after its writes return.
	deadline := time.Now().Add(testTimeout)
	for h.Stats().BytesOut < 11 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	st := h.Stats()
	if st.Active != 1 || st.Accepted != 1 || st.BytesIn != 11 || st.FramesIn != 2 || st.BytesOut != 11 {
		t.Fatalf("live stats %+v", st)
	}
	c.send(frame{op: ws.OpClose, payload: closeBody(4000, "app")})
	c.expectClose(4000)
	deadline = time.Now().Add(testTimeout)
	for h.Stats().Active > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	st = h.Stats()
	if st.Active != 0 || st.BytesIn != 11 || st.FramesIn != 3 || st.CloseReceived[4000] != 1 || st.CloseSent[4000] != 1 {
		t.Fatalf("stats after the end %+v", st)
	}
}

// newRecorderFunc returns a backend that reads until the stream ends.
func newRecorderFunc() mqttws.Backend {
	return mqttws.BackendFunc(func(_ context.Context, c net.Conn) error {
		_, err := io.Copy(io.Discard, c)
		return err
	})
}
