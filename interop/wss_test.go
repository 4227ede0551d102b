package interop

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mqttws/mqttws/internal/testbroker"
	"github.com/mqttws/mqttws/interop/h2ws"
)

// The examples serving TLS (-tls-cert, -tls-key): https pages and wss, with
// WebSockets over HTTP/2 (RFC 8441) when their environment says
// GODEBUG=http2xconnect=1.

// The GODEBUG settings the examples are started with. The tests run with
// GODEBUG=http2xconnect=1 themselves (TestMain), which children inherit:
// each example gets its setting explicitly.
const (
	xconnectOn  = "GODEBUG=" + h2ws.XConnectDebug
	xconnectOff = "" // GODEBUG unset
)

// wssURL finds the wss URL in the line an example prints once it serves.
var wssURL = regexp.MustCompile(`wss://127\.0\.0\.1:[0-9]+/mqtt`)

// startWSS runs example name (embedded or proxy, the proxy in front of a
// mosquitto listening on TCP) with cert, and with godebug (xconnectOn or
// xconnectOff) in its environment. Its URL is wss://..., its origin
// https://....
func startWSS(t testing.TB, name string, cert *testbroker.Cert, godebug string) target {
	t.Helper()
	env, err := exec.LookPath("env")
	if err != nil {
		t.Fatalf("env(1) is needed to start the examples with their own GODEBUG: %v", err)
	}
	// env execs the example in its own place: the process startProcess
	// signals is the example.
	args := []string{"-u", "GODEBUG"}
	if godebug != xconnectOff {
		args = []string{godebug}
	}
	args = append(args, exampleBinary(t, name), "-listen", "127.0.0.1:0", "-tls-cert", cert.CertFile, "-tls-key", cert.KeyFile)
	b := mochiBroker
	if name == "proxy" {
		args = append(args, "-upstream", testbroker.Start(t, testbroker.Options{}).Addr)
		b = mosquittoBroker
	} else {
		args = append(args, "-max-message", "2097152") // the Node transfers go up to 1 MiB
	}
	line := startProcess(t, env, args...)
	url := wssURL.FindString(line)
	if url == "" {
		t.Fatalf("%s printed %q, with no wss://127.0.0.1:PORT/mqtt URL in it", name, line)
	}
	return target{
		name:   name + "-wss",
		url:    url,
		origin: "https" + strings.TrimSuffix(strings.TrimPrefix(url, "wss"), "/mqtt"),
		broker: b,
		mqttws: true,
	}
}

// spkiHash is what Chromium's --ignore-certificate-errors-spki-list takes to
// trust a certificate: the base64 SHA-256 of its public key.
func spkiHash(cert *testbroker.Cert) string {
	sum := sha256.Sum256(cert.Certificate.Leaf.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// wssBrowserTimeout bounds js/wss-browser.mjs's whole run.
const wssBrowserTimeout = 3 * time.Minute

// wssSizes are the payloads the Paho and MQTT.js tabs send each other.
var wssSizes = []int{0, 10, 200 << 10}

type wssBrowserPlan struct {
	ExecutablePath string             `json:"executablePath"`
	UserDataDir    string             `json:"userDataDir"`
	PageServer     string             `json:"pageServer"`
	TimeoutMs      int                `json:"timeoutMs"`
	SPKI           string             `json:"spki"`
	NetLog         string             `json:"netLog"`
	Targets        []wssBrowserTarget `json:"targets"`
}

type wssBrowserTarget struct {
	Name     string        `json:"name"`
	Origin   string        `json:"origin"`
	URL      string        `json:"url"`
	Texts    []string      `json:"texts"`
	Topic    string        `json:"topic"`
	QoS      int           `json:"qos"`
	Payloads []payloadPlan `json:"payloads"`
}

type wssBrowserResult struct {
	Targets []struct {
		Name  string      `json:"name"`
		Demo  *demoResult `json:"demo"`
		Cross struct {
			Error        string              `json:"error"`
			PahoToMQTTjs []message           `json:"pahoToMqttjs"`
			MQTTjsToPaho []message           `json:"mqttjsToPaho"`
			Subprotocols map[string][]string `json:"subprotocols"`
		} `json:"cross"`
		Sockets []cdpSocket `json:"sockets"`
		Pages   []cdpPage   `json:"pages"`
	} `json:"targets"`
}

// cdpSocket is a WebSocket handshake as DevTools reported it
// (Network.webSocketHandshakeResponseReceived).
type cdpSocket struct {
	Tab     string            `json:"tab"`
	URL     string            `json:"url"`
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
}

// cdpPage is a response as DevTools reported it (Network.responseReceived).
type cdpPage struct {
	Tab      string `json:"tab"`
	URL      string `json:"url"`
	Status   int    `json:"status"`
	Protocol string `json:"protocol"`
}

// TestChromiumOpensWSSOnHTTP2WhenTheExampleTakesExtendedCONNECT loads the
// embedded example's page over https in headless Chromium, twice: from the
// example started with GODEBUG=http2xconnect=1, and from the same example
// started without it. Both times the demo page carries messages between
// two tabs (MQTT.js), and Paho in one tab and MQTT.js in another send each
// other payloads byte for byte. What carried the WebSockets is read from
// the browser's side, twice over: DevTools reports each handshake's status
// (200 for an RFC 8441 extended CONNECT, 101 for an HTTP/1.1 upgrade), and
// Chromium's net-log shows the HTTP/2 streams it opened with
// ":protocol: websocket" on the connection that carried the page, or the
// HTTP/1.1 upgrade requests it sent instead.
func TestChromiumOpensWSSOnHTTP2WhenTheExampleTakesExtendedCONNECT(t *testing.T) {
	t.Parallel()
	needNode(t)
	needFile(t, chromiumPath, "chromium")
	cert := testbroker.SelfSignedCert(t)
	runs := []struct {
		name   string
		env    string
		wantH2 bool
	}{
		{
			name:   "GODEBUG=http2xconnect=1",
			env:    xconnectOn,
			wantH2: true,
		},
		{
			name:   "GODEBUG unset",
			env:    xconnectOff,
			wantH2: false,
		},
	}
	dir := t.TempDir()
	plan := wssBrowserPlan{
		ExecutablePath: chromiumPath,
		UserDataDir:    filepath.Join(dir, "chromium"),
		PageServer:     servePage(t),
		TimeoutMs:      int(browserStepTimeout / time.Millisecond),
		SPKI:           spkiHash(cert),
		NetLog:         filepath.Join(dir, "netlog.json"),
	}
	for _, run := range runs {
		tg := startWSS(t, "embedded", cert, run.env)
		bt := wssBrowserTarget{Name: run.name, Origin: tg.origin, URL: tg.url, Texts: demoTexts, Topic: "interop/wss/" + run.name, QoS: 1}
		for _, n := range wssSizes {
			bt.Payloads = append(bt.Payloads, payloadPlan{Size: n, Seed: seedOf(run.name + sizeName(n))})
		}
		plan.Targets = append(plan.Targets, bt)
	}

	var out wssBrowserResult
	if err := runScript(t, wssBrowserTimeout, "wss-browser.mjs", plan, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Targets) != len(runs) {
		t.Fatalf("js/wss-browser.mjs reported %d runs, want %d", len(out.Targets), len(runs))
	}
	netLog, err := readNetLog(plan.NetLog)
	if err != nil {
		t.Fatalf("Chromium's net-log: %v", err)
	}

	for i, run := range runs {
		got, bt := out.Targets[i], plan.Targets[i]
		host := strings.TrimPrefix(bt.Origin, "https://")
		t.Run(run.name, func(t *testing.T) {
			t.Run("TheDemoPageCarriesMessagesBetweenTwoTabs", func(t *testing.T) {
				if got.Demo == nil {
					t.Fatal("no demo run reported")
				}
				checkDemo(t, got.Demo)
			})

			t.Run("PahoAndMQTTjsInTwoTabsSendEachOtherEveryPayload", func(t *testing.T) {
				c := got.Cross
				if c.Error != "" {
					t.Fatalf("in Chromium: %s", c.Error)
				}
				for _, dir := range []struct {
					what, to string
					got      []message
				}{
					{what: "Paho (MQTT 3.1.1) to MQTT.js (MQTT 5)", to: "mqttjs", got: c.PahoToMQTTjs},
					{what: "MQTT.js (MQTT 5) to Paho (MQTT 3.1.1)", to: "paho", got: c.MQTTjsToPaho},
				} {
					if len(dir.got) != len(bt.Payloads) {
						t.Errorf("%s: %d messages, want %d", dir.what, len(dir.got), len(bt.Payloads))
						continue
					}
					for k, p := range bt.Payloads {
						wantMessage{topic: bt.Topic + "/" + dir.to, qos: bt.QoS, size: p.Size, seed: p.Seed}.check(t, dir.what+", "+sizeName(p.Size), &dir.got[k])
					}
				}
				for lib, protocols := range c.Subprotocols {
					if len(protocols) != 1 || protocols[0] != "mqtt" {
						t.Errorf("%s's tab opened WebSockets with subprotocols %q, want one with mqtt", lib, protocols)
					}
				}
			})

			t.Run("PagesAreServedOverHTTP2", func(t *testing.T) {
				checked := 0
				for _, p := range got.Pages {
					if p.URL != bt.Origin+"/" && p.URL != bt.Origin+"/healthz" {
						continue // the route's responses, fulfilled by the test
					}
					checked++
					if p.Protocol != "h2" || p.Status != 200 {
						t.Errorf("%s in tab %s: %d over %q, want 200 over h2", p.URL, p.Tab, p.Status, p.Protocol)
					}
				}
				if checked != 4 { // two demo tabs, two /healthz
					t.Errorf("%d responses of the example's page and /healthz reported, want 4", checked)
				}
			})

			name := "WebSocketsGoOverHTTP11"
			if run.wantH2 {
				name = "WebSocketsGoOverHTTP2OnThePagesConnection"
			}
			t.Run(name, func(t *testing.T) {
				sockets := 0
				want := 101
				if run.wantH2 {
					want = 200 // RFC 8441 section 5: a 2xx ends the extended CONNECT
				}
				for _, s := range got.Sockets {
					if s.URL != bt.URL {
						continue
					}
					sockets++
					if s.Status != want {
						t.Errorf("DevTools: the WebSocket of tab %s was answered %d %v, want %d", s.Tab, s.Status, s.Headers, want)
					}
				}
				if sockets < 4 {
					t.Fatalf("DevTools reported %d WebSocket handshakes with %s, want 4 or more (two demo tabs, Paho, MQTT.js)", sockets, bt.URL)
				}
				nl := netLog.summary(host)
				t.Logf("DevTools: %d WebSocket handshakes answered %d; net-log for %s: %+v", sockets, want, host, nl)
				if nl.sessions == 0 || nl.pageGETs == 0 {
					t.Errorf("net-log: %d HTTP/2 sessions with %s carrying %d GETs, want the pages over HTTP/2", nl.sessions, host, nl.pageGETs)
				}
				if !run.wantH2 {
					if nl.h2WebSockets != 0 || nl.connectProtocol != 0 {
						t.Errorf("net-log: %d extended CONNECT streams, %d sessions with SETTINGS_ENABLE_CONNECT_PROTOCOL; want none without the GODEBUG setting", nl.h2WebSockets, nl.connectProtocol)
					}
					if nl.h1WebSockets < sockets {
						t.Errorf("net-log: %d HTTP/1.1 upgrade requests, want %d, one per WebSocket", nl.h1WebSockets, sockets)
					}
					return
				}
				if nl.h1WebSockets != 0 {
					t.Errorf("net-log: %d HTTP/1.1 upgrade requests, want none: every WebSocket over HTTP/2", nl.h1WebSockets)
				}
				if nl.h2WebSockets < sockets {
					t.Errorf("net-log: %d HTTP/2 streams with :protocol websocket, want %d, one per WebSocket", nl.h2WebSockets, sockets)
				}
				if nl.h2WebSocketsWithPages != nl.h2WebSockets {
					t.Errorf("net-log: %d of %d WebSocket streams on an HTTP/2 connection that also carried page requests, want all", nl.h2WebSocketsWithPages, nl.h2WebSockets)
				}
				if nl.connectProtocol != nl.sessions {
					t.Errorf("net-log: SETTINGS_ENABLE_CONNECT_PROTOCOL received on %d of %d sessions, want all", nl.connectProtocol, nl.sessions)
				}
			})
		})
	}
}

// netLog is what the tests read of a Chromium net-log (--log-net-log).
type netLog struct {
	sessions map[int]*h2Session // by source id
	// upgrades counts HTTP/1.1 WebSocket upgrade requests, by Host.
	upgrades map[string]int
}

// h2Session is an HTTP/2 connection of the browser.
type h2Session struct {
	host            string
	connectProtocol bool // the server sent SETTINGS_ENABLE_CONNECT_PROTOCOL = 1
	webSockets      int  // extended CONNECT streams with :protocol websocket
	gets            int  // GET streams
}

// readNetLog reads the events of a net-log that the tests need.
func readNetLog(path string) (*netLog, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f struct {
		Constants struct {
			LogEventTypes map[string]int `json:"logEventTypes"`
		} `json:"constants"`
		Events []struct {
			Type   int              `json:"type"`
			Phase  int              `json:"phase"`
			Source struct{ ID int } `json:"source"`
			Params json.RawMessage  `json:"params"`
		} `json:"events"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s (%d bytes): %w", path, len(b), err)
	}
	types := f.Constants.LogEventTypes
	for _, name := range []string{"HTTP2_SESSION", "HTTP2_SESSION_RECV_SETTING", "HTTP2_SESSION_SEND_HEADERS", "HTTP_TRANSACTION_SEND_REQUEST_HEADERS"} {
		if _, ok := types[name]; !ok {
			return nil, fmt.Errorf("%s: no event type %s: Chromium's net-log format changed", path, name)
		}
	}
	nl := &netLog{sessions: make(map[int]*h2Session), upgrades: make(map[string]int)}
	session := func(id int) *h2Session {
		s := nl.sessions[id]
		if s == nil {
			s = &h2Session{}
			nl.sessions[id] = s
		}
		return s
	}
	for _, e := range f.Events {
		var p struct {
			Host    string   `json:"host"`
			ID      any      `json:"id"`
			Value   any      `json:"value"`
			Headers []string `json:"headers"`
		}
		switch e.Type {
		case types["HTTP2_SESSION"], types["HTTP2_SESSION_RECV_SETTING"], types["HTTP2_SESSION_SEND_HEADERS"], types["HTTP_TRANSACTION_SEND_REQUEST_HEADERS"]:
			if len(e.Params) > 0 {
				if err := json.Unmarshal(e.Params, &p); err != nil {
					return nil, fmt.Errorf("%s: event params %s: %w", path, e.Params, err)
				}
			}
		default:
			continue
		}
		switch e.Type {
		case types["HTTP2_SESSION"]:
			if p.Host != "" {
				session(e.Source.ID).host = p.Host
			}
		case types["HTTP2_SESSION_RECV_SETTING"]:
			// "8 (SETTINGS_ENABLE_CONNECT_PROTOCOL)", RFC 8441 section 3.
			if id, ok := p.ID.(string); ok && strings.HasPrefix(id, "8 ") && p.Value == float64(1) {
				session(e.Source.ID).connectProtocol = true
			}
		case types["HTTP2_SESSION_SEND_HEADERS"]:
			s := session(e.Source.ID)
			switch {
			case hasHeader(p.Headers, ":method: CONNECT") && hasHeader(p.Headers, ":protocol: websocket"):
				s.webSockets++
			case hasHeader(p.Headers, ":method: GET"):
				s.gets++
			}
		case types["HTTP_TRANSACTION_SEND_REQUEST_HEADERS"]:
			if hasHeader(p.Headers, "Upgrade: websocket") {
				for _, h := range p.Headers {
					if host, ok := strings.CutPrefix(h, "Host: "); ok {
						nl.upgrades[host]++
					}
				}
			}
		}
	}
	return nl, nil
}

func hasHeader(headers []string, line string) bool {
	for _, h := range headers {
		if strings.EqualFold(h, line) {
			return true
		}
	}
	return false
}

// netLogSummary is what the net-log says of one host:port.
type netLogSummary struct {
	sessions              int // HTTP/2 connections
	connectProtocol       int // of them, those whose server allowed extended CONNECT
	pageGETs              int // GET streams on them
	h2WebSockets          int // WebSockets opened as HTTP/2 extended CONNECT streams
	h2WebSocketsWithPages int // of them, those on a connection that carried GETs too
	h1WebSockets          int // HTTP/1.1 upgrade requests
}

func (nl *netLog) summary(host string) netLogSummary {
	var s netLogSummary
	for _, sess := range nl.sessions {
		if sess.host != host {
			continue
		}
		s.sessions++
		s.pageGETs += sess.gets
		s.h2WebSockets += sess.webSockets
		if sess.connectProtocol {
			s.connectProtocol++
		}
		if sess.gets > 0 {
			s.h2WebSocketsWithPages += sess.webSockets
		}
	}
	s.h1WebSockets = nl.upgrades[host]
	return s
}

// TestMQTTjsInNodeOverWSS runs the MQTT.js cases of
// TestMQTTjsInNodeGetsEveryMessageByteExact over wss, against both
// examples serving TLS. Node's ws speaks HTTP/1.1 only.
func TestMQTTjsInNodeOverWSS(t *testing.T) {
	t.Parallel()
	needNode(t)
	cert := testbroker.SelfSignedCert(t)
	targets := []target{
		startWSS(t, "embedded", cert, xconnectOn),
		startWSS(t, "proxy", cert, xconnectOn),
	}
	cases := nodeCases()
	results := make([]map[string]nodeResult, len(targets))
	var wg sync.WaitGroup
	for i, tg := range targets {
		wg.Go(func() {
			var out struct {
				Results []nodeResult `json:"results"`
			}
			// Node trusts the certificate from its start: clients.mjs
			// dials as it would any server.
			env := []string{"NODE_EXTRA_CA_CERTS=" + cert.CertFile}
			if err := runScriptEnv(t, nodeRunTimeout, "clients.mjs", env, nodePlan{URL: tg.url, Concurrency: 10, Cases: cases}, &out); err != nil {
				t.Errorf("%s: %v", tg.name, err)
				return
			}
			results[i] = make(map[string]nodeResult, len(out.Results))
			for _, r := range out.Results {
				results[i][r.Name] = r
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			for _, c := range cases {
				t.Run(c.Name, func(t *testing.T) {
					r, ok := results[i][c.Name]
					if !ok {
						t.Fatal("js/clients.mjs reported nothing for this case")
					}
					checkNodeCase(t, tg, c, r)
				})
			}
		})
	}
}

// TestGoHTTP2ClientThroughTheExamples opens MQTT over WebSocket streams on
// one HTTP/2 connection (golang.org/x/net/http2, RFC 8441) to both
// examples started with GODEBUG=http2xconnect=1: each stream gets its
// CONNACK from the broker behind. Started without the setting, an example
// does not advertise extended CONNECT, and the client cannot open one.
func TestGoHTTP2ClientThroughTheExamples(t *testing.T) {
	t.Parallel()
	cert := testbroker.SelfSignedCert(t)
	conf := &tls.Config{RootCAs: cert.Pool}
	const streams = 10
	for _, name := range []string{"embedded", "proxy"} {
		t.Run(name, func(t *testing.T) {
			tg := startWSS(t, name, cert, xconnectOn)
			c, err := h2ws.Dial(strings.TrimPrefix(tg.origin, "https://"), conf)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for i := range streams {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				s, resp, err := c.Open(ctx, "https"+strings.TrimPrefix(tg.url, "wss"), []string{"mqtt"}, nil)
				cancel()
				if err != nil {
					t.Fatalf("stream %d: extended CONNECT: %v", i, err)
				}
				if s == nil {
					t.Fatalf("stream %d: extended CONNECT answered %s, want 200", i, resp.Status)
				}
				defer s.Close()
				if _, err := s.Write(connectPacket(fmt.Sprintf("h2-%s-%d", name, i), 60)); err != nil {
					t.Fatalf("stream %d: CONNECT: %v", i, err)
				}
				got := make([]byte, 4)
				if err := readFullWithin(s, got, 10*time.Second); err != nil || !bytes.Equal(got, testbroker.ConnackAccepted) {
					t.Fatalf("stream %d: CONNACK: % x, %v; want % x", i, got, err, testbroker.ConnackAccepted)
				}
			}
		})
	}
	t.Run("without the GODEBUG setting", func(t *testing.T) {
		tg := startWSS(t, "embedded", cert, xconnectOff)
		c, err := h2ws.Dial(strings.TrimPrefix(tg.origin, "https://"), conf)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, resp, err := c.Open(ctx, "https"+strings.TrimPrefix(tg.url, "wss"), []string{"mqtt"}, nil)
		if err == nil {
			if s != nil {
				_ = s.Close()
			}
			t.Fatalf("an extended CONNECT to the example without GODEBUG=%s: answered %v, want the client to refuse (no SETTINGS_ENABLE_CONNECT_PROTOCOL)", h2ws.XConnectDebug, resp.Status)
		}
		t.Logf("refused as expected: %v", err)
	})
}

// readFullWithin fills p from s within d.
func readFullWithin(s *h2ws.Conn, p []byte, d time.Duration) error {
	done := make(chan error, 1)
	go func() {
		n := 0
		for n < len(p) {
			m, err := s.Read(p[n:])
			n += m
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		s.Reset() // ends the read
		<-done
		return errors.New("timed out")
	}
}

// TestSIGTERMClosesWebSocketsOverHTTP2With1001: WebSockets over HTTP/2 are
// requests in progress for net/http, which its graceful shutdown would wait
// for; the example closes them with 1001 as it does hijacked connections,
// and exits at once.
func TestSIGTERMClosesWebSocketsOverHTTP2With1001(t *testing.T) {
	t.Parallel()
	cert := testbroker.SelfSignedCert(t)
	cmd := exec.Command(exampleBinary(t, "embedded"), "-listen", "127.0.0.1:0", "-tls-cert", cert.CertFile, "-tls-key", cert.KeyFile)
	cmd.Env = append(os.Environ(), xconnectOn)
	var stdout firstLine
	stdout.first = make(chan string, 1)
	var stderr testbroker.LockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("embedded's log:\n%s", tail(stderr.String()))
		}
	})
	var line string
	select {
	case line = <-stdout.first:
	case err := <-exited:
		exited <- err
		t.Fatalf("embedded exited before it served: %v\n%s", err, stderr.String())
	case <-time.After(startTimeout):
		t.Fatalf("embedded printed nothing within %v", startTimeout)
	}
	url := wssURL.FindString(line)
	if url == "" {
		t.Fatalf("embedded printed %q, with no wss:// URL", line)
	}
	c, err := h2ws.Dial(strings.TrimSuffix(strings.TrimPrefix(url, "wss://"), "/mqtt"), &tls.Config{RootCAs: cert.Pool})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const streams = 3
	var conns []*h2ws.Conn
	for i := range streams {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s, resp, err := c.Open(ctx, "https"+strings.TrimPrefix(url, "wss"), []string{"mqtt"}, nil)
		cancel()
		if err != nil || s == nil {
			t.Fatalf("stream %d: extended CONNECT: %v %v", i, err, resp)
		}
		if _, err := s.Write(connectPacket(fmt.Sprintf("h2-stays-%d", i), 60)); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 4)
		if err := readFullWithin(s, got, 10*time.Second); err != nil || !bytes.Equal(got, testbroker.ConnackAccepted) {
			t.Fatalf("stream %d: CONNACK: % x, %v", i, got, err)
		}
		conns = append(conns, s)
	}

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for i, s := range conns {
		// Read answers the close frame and ends with io.EOF.
		err := readFullWithin(s, make([]byte, 1), 5*time.Second)
		if !errors.Is(err, io.EOF) || s.CloseCode != 1001 {
			t.Errorf("stream %d after SIGTERM: %v, close code %d; want the close frame with 1001", i, err, s.CloseCode)
		}
	}
	select {
	case err := <-exited:
		exited <- err
		took := time.Since(start)
		t.Logf("exited %v after SIGTERM: %v", took.Round(time.Millisecond), err)
		if err != nil {
			t.Errorf("exit: %v, want status 0", err)
		}
		// A race-enabled build sleeps 1s at exit (GORACE atexit_sleep_ms).
		if took > 2*time.Second {
			t.Errorf("%v from SIGTERM to exit with %d WebSockets over HTTP/2 open, want well under a second", took, streams)
		}
	case <-time.After(stopTimeout):
		t.Fatalf("embedded did not exit within %v of SIGTERM", stopTimeout)
	}
	if log := stderr.String(); strings.Contains(log, "WARNING: DATA RACE") {
		t.Errorf("embedded reported a data race:\n%s", log)
	}
}
