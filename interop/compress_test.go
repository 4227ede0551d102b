package interop

import (
	"bytes"
	"compress/flate"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/internal/pahotest"
)

// Interoperability with permessage-deflate (Handler.Compression): real
// clients that offer it (ws in Node, Chromium, gorilla) and clients that do
// not, on one handler in front of mochi in process, over HTTP/1.1 and
// HTTP/2. The examples get no -compress flag here: the handler is built in
// the test.

// compressibleText returns size letters a to d drawn by xorshift32, as
// text() in js/compress-payload.mjs: it deflates about four times.
func compressibleText(size int, seed uint32) []byte {
	b := payload(size, seed)
	for i := range b {
		b[i] = 'a' + b[i]&3
	}
	return b
}

// deflateTarget serves mqttws with compression on, in front of mochi in
// process, over HTTP/1.1 on 127.0.0.1. It returns the handler, the ws://
// URL of its MQTT endpoint and its origin. The handler keeps a history
// (context takeover on the server's side, which clients that do not refuse
// it must follow across messages) and compresses every Write that shrinks,
// so that MQTT packets of every size go out compressed, each one able to
// refer to the ones before.
func deflateTarget(t *testing.T) (*mqttws.Handler, string, string) {
	t.Helper()
	h := &mqttws.Handler{
		Backend:     inProcessMochi(t),
		Compression: &mqttws.CompressionOptions{History: 1024, Threshold: -1},
		Logger:      slog.New(slog.DiscardHandler),
	}
	mux := http.NewServeMux()
	mux.Handle("/mqtt", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("Handler.Shutdown: %v", err)
		}
		srv.Close()
	})
	return h, "ws" + strings.TrimPrefix(srv.URL, "http") + "/mqtt", srv.URL
}

// checkCompressedTraffic checks that compression was used both ways (only
// from clients when out is false: random payloads do not shrink, and go out
// as they are) and that what left the server compressed shrank.
func checkCompressedTraffic(t *testing.T, h *mqttws.Handler, out bool) {
	t.Helper()
	st := h.Stats()
	t.Logf("compression: %d of %d connections; in %d messages, %d → %d bytes; out %d messages, %d → %d bytes",
		st.Compressed, st.Accepted, st.CompressedMessagesIn, st.CompressedWireBytesIn, st.CompressedBytesIn,
		st.CompressedMessagesOut, st.CompressedBytesOut, st.CompressedWireBytesOut)
	if st.Compressed == 0 || st.CompressedMessagesIn == 0 || (out && st.CompressedMessagesOut == 0) {
		t.Errorf("compression went unused: %+v", st)
	}
	if st.CompressedMessagesOut > 0 && st.CompressedWireBytesOut >= st.CompressedBytesOut {
		t.Errorf("%d bytes sent compressed took %d on the wire", st.CompressedBytesOut, st.CompressedWireBytesOut)
	}
}

// deflateNodeCase is a case of js/compress-node.mjs.
type deflateNodeCase struct {
	Name      string `json:"name"`
	Version   int    `json:"version"`
	QoS       int    `json:"qos"`
	Size      int    `json:"size"`
	Seed      uint32 `json:"seed"`
	Kind      string `json:"kind"`            // random or text
	Deflate   string `json:"deflate"`         // off, default or always
	Count     int    `json:"count,omitempty"` // messages, seeds Seed, Seed+1, …; 0: one
	TimeoutMs int    `json:"timeoutMs"`
}

// deflateSizes are the payload sizes of the compression cases.
var deflateSizes = []int{0, 1, 125, 126, 64 << 10, 1 << 20}

// TestMQTTjsInNodeWithCompression runs MQTT.js over Node's ws, which offers
// permessage-deflate by default, against a handler with compression on:
// every protocol version and QoS, random and compressible payloads of 0 B
// to 1 MiB, with ws's default threshold (1 KiB) and compressing every
// message; clients that offer no compression are served on the same
// handler. Each socket reports the extension it negotiated.
func TestMQTTjsInNodeWithCompression(t *testing.T) {
	t.Parallel()
	needNode(t)
	h, u, _ := deflateTarget(t)
	var cases []deflateNodeCase
	add := func(c deflateNodeCase) {
		c.Name = fmt.Sprintf("%s/v%d/qos%d/%s/%s", c.Deflate, c.Version, c.QoS, c.Kind, sizeName(c.Size))
		if c.Count > 1 {
			c.Name += fmt.Sprintf("/x%d", c.Count)
		}
		c.Seed = seedOf(c.Name)
		c.TimeoutMs = int(nodeCaseTimeout / time.Millisecond)
		cases = append(cases, c)
	}
	for _, v := range mqttVersions {
		for _, q := range qosLevels {
			for _, kind := range []string{"random", "text"} {
				for _, n := range deflateSizes {
					add(deflateNodeCase{Version: v, QoS: q, Size: n, Kind: kind, Deflate: "default"})
				}
			}
		}
	}
	for _, kind := range []string{"random", "text"} {
		for _, n := range deflateSizes {
			add(deflateNodeCase{Version: 4, QoS: 1, Size: n, Kind: kind, Deflate: "always"})
			add(deflateNodeCase{Version: 4, QoS: 1, Size: n, Kind: kind, Deflate: "off"})
		}
	}
	// Series of messages on one connection, which the server compresses
	// with its history: ws must inflate each with the ones before.
	for _, v := range []int{4, 5} {
		for _, n := range []int{200, 3000} {
			add(deflateNodeCase{Version: v, QoS: 1, Size: n, Kind: "text", Deflate: "default", Count: 40})
		}
	}
	var out struct {
		Results []struct {
			Name       string    `json:"name"`
			Error      string    `json:"error"`
			Extensions []string  `json:"extensions"`
			Message    *message  `json:"message"`
			Messages   []message `json:"messages"`
		} `json:"results"`
	}
	plan := map[string]any{"url": u, "concurrency": 8, "cases": cases}
	if err := runScript(t, nodeRunTimeout, "compress-node.mjs", plan, &out); err != nil {
		t.Fatal(err)
	}
	byName := make(map[string]int, len(out.Results))
	for i, r := range out.Results {
		byName[r.Name] = i
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			i, ok := byName[c.Name]
			if !ok {
				t.Fatal("js/compress-node.mjs reported nothing for this case")
			}
			r := out.Results[i]
			if r.Error != "" {
				t.Fatalf("MQTT.js: %s", r.Error)
			}
			want := "permessage-deflate"
			if c.Deflate == "off" {
				want = ""
			}
			if len(r.Extensions) != 2 || r.Extensions[0] != want || r.Extensions[1] != want {
				t.Errorf("negotiated extensions %q, want %q for both clients", r.Extensions, want)
			}
			w := wantMessage{topic: "interop/deflate/" + c.Name, qos: c.QoS, size: c.Size, seed: c.Seed}
			if c.Count > 1 {
				if len(r.Messages) != c.Count {
					t.Fatalf("%d messages, want %d", len(r.Messages), c.Count)
				}
				for k := range r.Messages {
					w.checkBytes(t, fmt.Sprintf("subscriber, message %d", k), &r.Messages[k], compressibleText(c.Size, c.Seed+uint32(k)))
				}
				return
			}
			if c.Kind == "text" {
				w.checkBytes(t, "subscriber", r.Message, compressibleText(c.Size, c.Seed))
			} else {
				w.check(t, "subscriber", r.Message)
			}
		})
	}
	checkCompressedTraffic(t, h, true)
}

// checkBytes is check for a payload that is not payload(size, seed).
func (w wantMessage) checkBytes(t testing.TB, what string, got *message, want []byte) {
	t.Helper()
	switch {
	case got == nil:
		t.Errorf("%s: no message, want %d bytes on %q", what, len(want), w.topic)
	case got.Topic != w.topic || got.QoS != w.qos || got.Retain != w.retain:
		t.Errorf("%s: topic %q QoS %d retain %v, want %q %d %v", what, got.Topic, got.QoS, got.Retain, w.topic, w.qos, w.retain)
	case got.Len != len(want) || got.SHA256 != sha256Hex(want):
		t.Errorf("%s: payload of %d bytes with SHA-256 %s, want %d bytes with %s", what, got.Len, got.SHA256, len(want), sha256Hex(want))
	}
}

// TestChromiumWithCompression runs Paho and MQTT.js in headless Chromium,
// which offers permessage-deflate on every WebSocket, against a handler
// with compression on: random payloads of 0 B to 1 MiB between two
// clients of each library, and compressible text from MQTT.js; the page
// reports the extension every socket negotiated, as the browser saw it.
func TestChromiumWithCompression(t *testing.T) {
	t.Parallel()
	needNode(t)
	needFile(t, chromiumPath, "chromium")
	pageServer := servePage(t)
	h, u, origin := deflateTarget(t)
	type textPlan struct {
		Topic string `json:"topic"`
		QoS   int    `json:"qos"`
		Seed  uint32 `json:"seed"`
		Sizes []int  `json:"sizes"`
	}
	plan := struct {
		ExecutablePath string              `json:"executablePath"`
		UserDataDir    string              `json:"userDataDir"`
		PageServer     string              `json:"pageServer"`
		TimeoutMs      int                 `json:"timeoutMs"`
		Origin         string              `json:"origin"`
		URL            string              `json:"url"`
		Clients        []browserClientPlan `json:"clients"`
		Text           textPlan            `json:"text"`
	}{
		ExecutablePath: chromiumPath,
		UserDataDir:    filepath.Join(t.TempDir(), "chromium"),
		PageServer:     pageServer,
		TimeoutMs:      int(browserStepTimeout / time.Millisecond),
		Origin:         origin,
		URL:            u,
		Text:           textPlan{Topic: "interop/deflate/browser/text", QoS: 1, Seed: seedOf("browser text"), Sizes: browserTextSizes()},
	}
	for _, c := range browserClients {
		cp := browserClientPlan{Name: c.name, Lib: c.lib, Version: c.version, QoS: browserQoS, Topic: "interop/deflate/browser/" + c.name}
		for _, n := range deflateSizes {
			cp.Payloads = append(cp.Payloads, payloadPlan{Size: n, Seed: seedOf("deflate" + c.name + sizeName(n))})
		}
		plan.Clients = append(plan.Clients, cp)
	}
	var out struct {
		Clients []struct {
			Name         string    `json:"name"`
			Error        string    `json:"error"`
			Subprotocols []string  `json:"subprotocols"`
			Messages     []message `json:"messages"`
			Extensions   []string  `json:"extensions"`
		} `json:"clients"`
		Text struct {
			Error      string `json:"error"`
			Extensions []string
			Messages   []struct {
				Len    int    `json:"len"`
				SHA256 string `json:"sha256"`
			} `json:"messages"`
		} `json:"text"`
	}
	if err := runScript(t, browserRunTimeout, "compress-browser.mjs", plan, &out); err != nil {
		t.Fatal(err)
	}
	checkExtensions := func(t *testing.T, got []string) {
		t.Helper()
		if len(got) == 0 {
			t.Error("the page opened no WebSocket")
		}
		for _, e := range got {
			if !strings.Contains(e, "permessage-deflate") || strings.Contains(e, "server_no_context_takeover") || !strings.Contains(e, "client_no_context_takeover") {
				t.Errorf("the browser negotiated extensions %q, want permessage-deflate with the server's context kept and the client's not", e)
			}
		}
		t.Logf("Sec-WebSocket-Extensions as Chromium reports it: %q", got)
	}
	if len(out.Clients) != len(plan.Clients) {
		t.Fatalf("js/compress-browser.mjs reported %d clients, want %d", len(out.Clients), len(plan.Clients))
	}
	for i, c := range plan.Clients {
		r := out.Clients[i]
		t.Run(c.Name, func(t *testing.T) {
			if r.Error != "" {
				t.Fatalf("in Chromium: %s", r.Error)
			}
			checkExtensions(t, r.Extensions)
			if len(r.Messages) != len(c.Payloads) {
				t.Fatalf("%d messages, want %d", len(r.Messages), len(c.Payloads))
			}
			for k, p := range c.Payloads {
				wantMessage{topic: c.Topic, qos: c.QoS, size: p.Size, seed: p.Seed}.check(t, sizeName(p.Size)+" message", &r.Messages[k])
			}
		})
	}
	t.Run("CompressibleText", func(t *testing.T) {
		r := out.Text
		if r.Error != "" {
			t.Fatalf("in Chromium: %s", r.Error)
		}
		checkExtensions(t, r.Extensions)
		if len(r.Messages) != len(plan.Text.Sizes) {
			t.Fatalf("%d messages, want %d", len(r.Messages), len(plan.Text.Sizes))
		}
		for k, n := range plan.Text.Sizes {
			want := compressibleText(n, plan.Text.Seed)
			if got := r.Messages[k]; got.Len != n || got.SHA256 != sha256Hex(want) {
				t.Errorf("%s message: %d bytes with SHA-256 %s, want %d with %s", sizeName(n), got.Len, got.SHA256, n, sha256Hex(want))
			}
		}
	})
	checkCompressedTraffic(t, h, true)
}

// browserTextSizes are the sizes of the text messages the browser sends and
// receives back on one connection: deflateSizes, then 300 to 339 bytes,
// which share their beginnings (the same seed), so that the server's
// compressor refers to the messages before in its history, and the browser
// must inflate each with them.
func browserTextSizes() []int {
	sizes := slices.Clone(deflateSizes)
	for n := 300; n < 340; n++ {
		sizes = append(sizes, n)
	}
	return sizes
}

// TestPahoMQTTGolangOverGorillaWithCompression runs paho.mqtt.golang over
// gorilla/websocket with EnableCompression (paho's own dialer turns it off:
// the test dials through SetCustomOpenConnectionFn), every QoS and payload
// size, against a handler with compression on.
func TestPahoMQTTGolangOverGorillaWithCompression(t *testing.T) {
	t.Parallel()
	h, u, _ := deflateTarget(t)
	var mu sync.Mutex
	var answers []string
	open := func(uri *url.URL, _ paho.ClientOptions) (net.Conn, error) {
		c, ext, err := pahotest.DialGorilla(uri.String(), 10*time.Second)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		answers = append(answers, ext)
		mu.Unlock()
		return c, nil
	}
	run := func(ctx context.Context, url string, c goCase) goResult {
		return pahoTransferWith(ctx, url, c, open)
	}
	cases := goCases()
	results := make([]goResult, len(cases))
	var wg sync.WaitGroup
	sem := make(chan struct{}, goConcurrency)
	for i, c := range cases {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), goCaseTimeout)
			defer cancel()
			results[i] = run(ctx, u, c)
		})
	}
	wg.Wait()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if r := results[i]; r.err != nil {
				t.Fatal(r.err)
			} else {
				wantMessage{topic: goTopic(c), qos: c.qos, size: c.size, seed: c.seed}.check(t, "subscriber", r.message)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	for _, a := range answers {
		// gorilla offers server_no_context_takeover: the history is not used.
		if a != "permessage-deflate;server_no_context_takeover;client_no_context_takeover" {
			t.Errorf("gorilla got Sec-WebSocket-Extensions %q", a)
		}
	}
	checkCompressedTraffic(t, h, false)
}

// pahoTransferWith is pahoTransfer with the connections opened by open.
func pahoTransferWith(ctx context.Context, url string, c goCase, open paho.OpenConnectionFunc) goResult {
	deadline, _ := ctx.Deadline()
	timeout := time.Until(deadline)
	connect := func(role string) (paho.Client, error) {
		opts := paho.NewClientOptions().
			AddBroker(url).
			SetClientID(clientID(role)).
			SetProtocolVersion(4).
			SetCleanSession(true).
			SetAutoReconnect(false).
			SetConnectRetry(false).
			SetConnectTimeout(timeout).
			SetWriteTimeout(timeout).
			SetKeepAlive(60 * time.Second).
			SetCustomOpenConnectionFn(open)
		cl := paho.NewClient(opts)
		if err := waitToken(cl.Connect(), timeout); err != nil {
			return nil, fmt.Errorf("%s: connect: %w", role, err)
		}
		return cl, nil
	}
	sub, err := connect("zsub")
	if err != nil {
		return goResult{err: err}
	}
	defer sub.Disconnect(250)
	pub, err := connect("zpub")
	if err != nil {
		return goResult{err: err}
	}
	defer pub.Disconnect(250)
	got := make(chan *message, 1)
	topic := goTopic(c) + "/deflate"
	err = waitToken(sub.Subscribe(topic, byte(c.qos), func(_ paho.Client, m paho.Message) {
		select {
		case got <- &message{Topic: goTopic(c), QoS: int(m.Qos()), Retain: m.Retained(), Len: len(m.Payload()), SHA256: sha256Hex(m.Payload())}:
		default:
		}
	}), timeout)
	if err != nil {
		return goResult{err: fmt.Errorf("subscribe: %w", err)}
	}
	if err := waitToken(pub.Publish(topic, byte(c.qos), false, payload(c.size, c.seed)), time.Until(deadline)); err != nil {
		return goResult{err: fmt.Errorf("publish: %w", err)}
	}
	select {
	case m := <-got:
		return goResult{message: m}
	case <-ctx.Done():
		return goResult{err: fmt.Errorf("no message within %v", goCaseTimeout)}
	}
}

// TestHTTP2WithCompression: over HTTP/2 (RFC 8441) the 200 carries the
// same Sec-WebSocket-Extensions answer as a 101, and a fragmented compressed
// message with pings between its frames comes back byte for byte; a stream
// that offers nothing on the same connection is served uncompressed.
func TestHTTP2WithCompression(t *testing.T) {
	t.Parallel()
	h := &mqttws.Handler{Backend: echoBackend(), Compression: &mqttws.CompressionOptions{}, Logger: slog.New(slog.DiscardHandler)}
	u, conf := h2Server(t, h)
	c := dialH2(t, hostOf(t, u), conf)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	s, resp, err := c.Open(ctx, u, []string{"mqtt"}, http.Header{"Sec-Websocket-Extensions": {"permessage-deflate; client_max_window_bits"}})
	if err != nil || s == nil {
		t.Fatalf("open: %v %v", resp, err)
	}
	if got, want := resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate;server_no_context_takeover;client_no_context_takeover"; got != want {
		t.Fatalf("the 200 carries Sec-WebSocket-Extensions %q, want %q", got, want)
	}
	p := compressibleText(100<<10, 1)
	var z bytes.Buffer
	fw, _ := flate.NewWriter(&z, flate.BestSpeed)
	_, _ = fw.Write(p)
	_ = fw.Flush()
	zp := bytes.TrimSuffix(z.Bytes(), []byte{0, 0, 0xff, 0xff})
	third := len(zp) / 3
	raw := concatBytes(
		clientFrame(ws.OpBinary, true, false, zp[:third]),
		maskedControl(0x9, []byte("ping")),
		clientFrame(ws.OpContinuation, false, false, zp[third:2*third]),
		maskedControl(0x9, []byte("ping")),
		clientFrame(ws.OpContinuation, false, true, zp[2*third:]),
	)
	if err := s.WriteRaw(raw); err != nil {
		t.Fatal(err)
	}
	got, compressed := readRawMessages(t, s.RawBody(), len(p))
	if !bytes.Equal(got, p) {
		t.Fatalf("the echo of %d bytes differs (%d bytes back)", len(p), len(got))
	}
	if !compressed {
		t.Error("the echo came back uncompressed")
	}
	_ = s.Close()

	plain, resp, err := c.Open(ctx, u, []string{"mqtt"}, nil)
	if err != nil || plain == nil {
		t.Fatalf("open: %v %v", resp, err)
	}
	if got := resp.Header.Get("Sec-WebSocket-Extensions"); got != "" {
		t.Fatalf("a stream offering nothing got Sec-WebSocket-Extensions %q", got)
	}
	expectEcho(t, plain, p)
	_ = plain.Close()
	if st := h.Stats(); st.Compressed != 1 || st.CompressedBytesIn != uint64(len(p)) {
		t.Errorf("Stats: Compressed %d, CompressedBytesIn %d; want 1 and %d", st.Compressed, st.CompressedBytesIn, len(p))
	}
}

// clientFrame encodes a masked client frame, with RSV1 when compressed.
func clientFrame(op ws.OpCode, compressed, fin bool, p []byte) []byte {
	h := ws.Header{Fin: fin, OpCode: op, Length: int64(len(p)), Masked: true, Mask: [4]byte{5, 6, 7, 8}}
	if compressed {
		h.Rsv = ws.Rsv(true, false, false)
	}
	q := bytes.Clone(p)
	ws.Cipher(q, h.Mask, 0)
	var b bytes.Buffer
	_ = ws.WriteHeader(&b, h)
	b.Write(q)
	return b.Bytes()
}

func concatBytes(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// readRawMessages reads server messages from r until n bytes of data came,
// inflating the compressed ones, and reports whether any was compressed.
func readRawMessages(t *testing.T, r io.Reader, n int) ([]byte, bool) {
	t.Helper()
	var got []byte
	anyCompressed := false
	for len(got) < n {
		var msg []byte
		compressed := false
		for first := true; ; {
			h, err := ws.ReadHeader(r)
			if err != nil {
				t.Fatalf("read a frame header after %d bytes: %v", len(got), err)
			}
			p := make([]byte, h.Length)
			if _, err := io.ReadFull(r, p); err != nil {
				t.Fatal(err)
			}
			if h.OpCode.IsControl() {
				if h.Rsv != 0 {
					t.Fatalf("RSV bits on a %v frame", h.OpCode)
				}
				continue
			}
			if first {
				compressed = h.Rsv == ws.Rsv(true, false, false)
				first = false
			} else if h.Rsv != 0 {
				t.Fatal("RSV bits on a continuation frame")
			}
			msg = append(msg, p...)
			if h.Fin {
				break
			}
		}
		if compressed {
			anyCompressed = true
			fr := flate.NewReader(io.MultiReader(bytes.NewReader(msg), bytes.NewReader([]byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff})))
			var err error
			if msg, err = io.ReadAll(fr); err != nil {
				t.Fatalf("inflate: %v", err)
			}
		}
		got = append(got, msg...)
	}
	return got, anyCompressed
}
