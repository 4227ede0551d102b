package mqttws_test

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mqttws/mqttws"
)

// The permessage-deflate answer of a handler to a plain offer.
const acceptDeflate = "permessage-deflate;server_no_context_takeover;client_no_context_takeover"

// dialOffering opens a WebSocket with a raw handshake whose
// Sec-WebSocket-Extensions fields are offers (none when empty), and returns
// the client and the server's Sec-WebSocket-Extensions answer.
func dialOffering(t *testing.T, url string, offers ...string) (*client, string) {
	t.Helper()
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/mqtt")
	conn, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/mqtt", nil)
	req.Header = upgradeHeader()
	for _, o := range offers {
		req.Header.Add("Sec-WebSocket-Extensions", o)
	}
	_ = conn.SetDeadline(time.Now().Add(testTimeout))
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake answered %d, want 101", resp.StatusCode)
	}
	_ = conn.SetDeadline(time.Time{})
	return &client{t: t, conn: conn, r: br}, resp.Header.Get("Sec-WebSocket-Extensions")
}

// deflateHandler serves b with compression on.
func deflateHandler(b mqttws.Backend, opts mqttws.CompressionOptions) *mqttws.Handler {
	return &mqttws.Handler{Backend: b, Compression: &opts, Logger: discardLogger()}
}

// deflate compresses p as a permessage-deflate sender does: a flushed
// deflate stream without its trailing 00 00 ff ff.
func deflate(p []byte) []byte {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.BestSpeed)
	_, _ = w.Write(p)
	_ = w.Flush()
	return bytes.TrimSuffix(b.Bytes(), []byte{0, 0, 0xff, 0xff})
}

// inflate decompresses a message's payload as a permessage-deflate
// receiver does.
func inflate(t *testing.T, p []byte) []byte {
	t.Helper()
	r := flate.NewReader(io.MultiReader(bytes.NewReader(p), bytes.NewReader([]byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff})))
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("inflate %d bytes: %v", len(p), err)
	}
	return out
}

// inflateWithWindow decompresses a message's payload as a receiver with
// context takeover does: window holds the end of what it inflated before.
func inflateWithWindow(t *testing.T, p, window []byte) []byte {
	t.Helper()
	r := flate.NewReaderDict(io.MultiReader(bytes.NewReader(p), bytes.NewReader([]byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff})), window)
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("inflate %d bytes with a window of %d: %v", len(p), len(window), err)
	}
	return out
}

// compressedFrames splits a compressed message into frames at the given
// payload offsets: RSV1 on the first, continuations after.
func compressedFrames(z []byte, cuts ...int) []frame {
	var fs []frame
	start := 0
	for i, end := range append(cuts, len(z)) {
		f := frame{op: ws.OpContinuation, notFinal: true, payload: z[start:end]}
		if i == 0 {
			f.op, f.rsv = ws.OpBinary, 4
		}
		fs = append(fs, f)
		start = end
	}
	fs[len(fs)-1].notFinal = false
	return fs
}

// serverMessage is a message the server sent, as a client sees it.
type serverMessage struct {
	compressed bool
	frames     []ws.Header
	data       []byte // inflated
	wire       []byte // the payload as it came
}

// readMessage reads the next data message, skipping pongs, and checks the
// frames against RFC 7692's rules for a sender.
func (c *client) readMessage() serverMessage {
	c.t.Helper()
	var m serverMessage
	var payload []byte
	for {
		_ = c.conn.SetReadDeadline(time.Now().Add(testTimeout))
		h, err := ws.ReadHeader(c.r)
		if err != nil {
			c.t.Fatalf("read a frame header: %v", err)
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(c.r, p); err != nil {
			c.t.Fatalf("read a frame payload: %v", err)
		}
		rsv1 := h.Rsv&4 != 0
		switch {
		case h.Masked || h.Rsv&3 != 0:
			c.t.Fatalf("server frame %+v: masked, or RSV2 or RSV3 set", h)
		case rsv1 && (h.OpCode.IsControl() || h.OpCode == ws.OpContinuation):
			c.t.Fatalf("server set RSV1 on a %v frame", h.OpCode)
		case h.OpCode == ws.OpPong:
			continue
		case h.OpCode.IsControl():
			c.t.Fatalf("server sent a %v frame %q while data was expected", h.OpCode, p)
		case len(m.frames) == 0 && h.OpCode != ws.OpBinary, len(m.frames) > 0 && h.OpCode != ws.OpContinuation:
			c.t.Fatalf("server sent a %v frame as frame %d of a message", h.OpCode, len(m.frames))
		}
		if len(m.frames) == 0 {
			m.compressed = rsv1
		}
		m.frames = append(m.frames, h)
		payload = append(payload, p...)
		if h.Fin {
			break
		}
	}
	m.data = payload
	m.wire = payload
	switch {
	case m.compressed && c.window != nil:
		m.data = inflateWithWindow(c.t, payload, *c.window)
		*c.window = append(*c.window, m.data...)
		if over := len(*c.window) - 32<<10; over > 0 {
			*c.window = (*c.window)[over:]
		}
	case m.compressed:
		m.data = inflate(c.t, payload)
	}
	return m
}

// readEcho reads messages until n bytes of data came.
func (c *client) readEcho(n int) ([]byte, []serverMessage) {
	c.t.Helper()
	var got []byte
	var msgs []serverMessage
	for len(got) < n {
		m := c.readMessage()
		msgs = append(msgs, m)
		got = append(got, m.data...)
	}
	return got, msgs
}

// TestCompressionNegotiation checks the answer to each kind of
// Sec-WebSocket-Extensions offer (RFC 7692 section 5 and 7.1): the first
// offer the server can honor is accepted without context takeover either
// way, the others are declined, and a declined offer never refuses the
// handshake.
func TestCompressionNegotiation(t *testing.T) {
	t.Parallel()
	on := serve(t, deflateHandler(mqttws.BackendFunc(echo), mqttws.CompressionOptions{}))
	off := serve(t, &mqttws.Handler{Backend: mqttws.BackendFunc(echo)})
	cases := []struct {
		name   string
		url    string
		offers []string
		want   string
	}{
		{
			name: "NoOfferNoCompression",
			url:  on,
			want: "",
		},
		{
			name:   "PlainOfferIsAcceptedWithoutContextTakeover",
			url:    on,
			offers: []string{"permessage-deflate"},
			want:   acceptDeflate,
		},
		{
			name:   "ChromiumAndNodeOfferIsAccepted",
			url:    on,
			offers: []string{"permessage-deflate; client_max_window_bits"},
			want:   acceptDeflate,
		},
		{
			name:   "OfferWithBothNoContextTakeoverIsAccepted",
			url:    on,
			offers: []string{"permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=10"},
			want:   acceptDeflate,
		},
		{
			name:   "SmallServerWindowIsDeclined",
			url:    on,
			offers: []string{"permessage-deflate; server_max_window_bits=10"},
			want:   "",
		},
		{
			name:   "FullServerWindowIsAcceptedAndEchoed",
			url:    on,
			offers: []string{"permessage-deflate; server_max_window_bits=15"},
			want:   acceptDeflate + ";server_max_window_bits=15",
		},
		{
			name:   "FirstOfferHonoredWins",
			url:    on,
			offers: []string{"permessage-deflate; server_max_window_bits=9, permessage-deflate; client_max_window_bits"},
			want:   acceptDeflate,
		},
		{
			name:   "OfferInASecondFieldIsSeen",
			url:    on,
			offers: []string{"x-webkit-deflate-frame", "permessage-deflate"},
			want:   acceptDeflate,
		},
		{
			name:   "UnknownParameterIsDeclined",
			url:    on,
			offers: []string{"permessage-deflate; mystery=1"},
			want:   "",
		},
		{
			name:   "RepeatedParameterIsDeclined",
			url:    on,
			offers: []string{"permessage-deflate; client_no_context_takeover; client_no_context_takeover"},
			want:   "",
		},
		{
			name:   "InvalidWindowBitsIsDeclined",
			url:    on,
			offers: []string{"permessage-deflate; client_max_window_bits=16"},
			want:   "",
		},
		{
			name:   "OtherExtensionsAreDeclined",
			url:    on,
			offers: []string{"x-webkit-deflate-frame, permessage-foo"},
			want:   "",
		},
		{
			name:   "MalformedFieldIsIgnored",
			url:    on,
			offers: []string{";;,=permessage-deflate"},
			want:   "",
		},
		{
			name:   "HandlerWithoutCompressionDeclines",
			url:    off,
			offers: []string{"permessage-deflate"},
			want:   "",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, got := dialOffering(t, tc.url, tc.offers...)
			if got != tc.want {
				t.Fatalf("Sec-WebSocket-Extensions %q, want %q", got, tc.want)
			}
			// Served either way.
			c.send(binaryFrame([]byte("ping?")))
			if m := c.readMessage(); string(m.data) != "ping?" || m.compressed {
				t.Fatalf("echo %q (compressed %v), want %q uncompressed (under the threshold)", m.data, m.compressed, "ping?")
			}
		})
	}
}

// TestCompressedBitRules checks RFC 7692 section 6: RSV1 marks the first
// frame of a compressed message and nothing else; anywhere else, or without
// the extension, it fails the connection with 1002.
func TestCompressedBitRules(t *testing.T) {
	z := deflate([]byte("hello hello hello"))
	cases := []struct {
		name   string
		offer  bool
		frames []frame
		code   mqttws.CloseCode
		reason string
		want   string // read by the backend, when the frames are valid
	}{
		{
			name:   "RSV1OnAFirstFrameMarksItCompressed",
			offer:  true,
			frames: compressedFrames(z),
			want:   "hello hello hello",
		},
		{
			name:   "RSV1WithoutNegotiationClosesWith1002",
			offer:  false,
			frames: compressedFrames(z),
			code:   mqttws.CloseProtocolError,
			reason: "not negotiated",
		},
		{
			name:   "RSV1OnAPingClosesWith1002",
			offer:  true,
			frames: []frame{{op: ws.OpPing, rsv: 4}},
			code:   mqttws.CloseProtocolError,
			reason: "control frame",
		},
		{
			name:   "RSV1OnAPongClosesWith1002",
			offer:  true,
			frames: []frame{{op: ws.OpPong, rsv: 4}},
			code:   mqttws.CloseProtocolError,
			reason: "control frame",
		},
		{
			name:   "RSV1OnACloseClosesWith1002",
			offer:  true,
			frames: []frame{{op: ws.OpClose, rsv: 4, payload: closeBody(1000, "")}},
			code:   mqttws.CloseProtocolError,
			reason: "control frame",
		},
		{
			name:  "RSV1OnAContinuationClosesWith1002",
			offer: true,
			frames: []frame{
				{op: ws.OpBinary, rsv: 4, notFinal: true, payload: z[:3]},
				{op: ws.OpContinuation, rsv: 4, payload: z[3:]},
			},
			code:   mqttws.CloseProtocolError,
			reason: "continuation",
		},
		{
			name:  "RSV1OnAContinuationOfAnUncompressedMessageClosesWith1002",
			offer: true,
			frames: []frame{
				{op: ws.OpBinary, notFinal: true, payload: []byte("ab")},
				{op: ws.OpContinuation, rsv: 4, payload: []byte("cd")},
			},
			code:   mqttws.CloseProtocolError,
			reason: "continuation",
		},
		{
			name:   "RSV2StillClosesWith1002",
			offer:  true,
			frames: []frame{{op: ws.OpBinary, rsv: 2, payload: []byte("x")}},
			code:   mqttws.CloseProtocolError,
		},
		{
			name:   "RSV1WithRSV3ClosesWith1002",
			offer:  true,
			frames: []frame{{op: ws.OpBinary, rsv: 5, payload: z}},
			code:   mqttws.CloseProtocolError,
		},
		{
			name:   "CompressedTextFrameClosesWith1003",
			offer:  true,
			frames: []frame{{op: ws.OpText, rsv: 4, payload: z}},
			code:   mqttws.CloseUnsupportedData,
		},
		{
			name:   "InvalidCompressedDataClosesWith1007",
			offer:  true,
			frames: compressedFrames([]byte{0xff, 0xff, 0xff, 0xff}),
			code:   mqttws.CloseInvalidPayload,
			reason: "compressed data",
		},
		{
			name:   "TruncatedCompressedDataClosesWith1007",
			offer:  true,
			frames: compressedFrames(z[:len(z)/2]),
			code:   mqttws.CloseInvalidPayload,
			reason: "compressed data",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			url := serve(t, deflateHandler(rec, mqttws.CompressionOptions{}))
			var offers []string
			if tc.offer {
				offers = []string{"permessage-deflate"}
			}
			c, _ := dialOffering(t, url, offers...)
			c.send(tc.frames...)
			if tc.code == 0 {
				c.send(frame{op: ws.OpClose, payload: closeBody(1000, "")})
				c.expectClose(mqttws.CloseNormal)
				if got, _ := rec.wait(t); string(got) != tc.want {
					t.Fatalf("backend read %q, want %q", got, tc.want)
				}
				return
			}
			reason := c.expectClose(tc.code)
			if !strings.Contains(strings.ToLower(reason), strings.ToLower(tc.reason)) {
				t.Errorf("close reason %q does not mention %q", reason, tc.reason)
			}
			_, err := rec.wait(t)
			var ce *mqttws.CloseError
			if !asCloseError(err, &ce) || ce.Code != tc.code {
				t.Errorf("backend read error %v, want a *CloseError with code %d", err, tc.code)
			}
		})
	}
}

// telemetry returns about n bytes of JSON telemetry, as web apps publish.
func telemetry(n int, rng *rand.Rand) []byte {
	var b []byte
	for i := 0; len(b) < n; i++ {
		m, _ := json.Marshal(map[string]any{
			"device":      fmt.Sprintf("sensor-%04d", rng.IntN(10000)),
			"seq":         i,
			"temperature": 20 + rng.Float64()*5,
			"humidity":    40 + rng.Float64()*20,
			"status":      []string{"ok", "warn", "ok", "ok"}[rng.IntN(4)],
			"ts":          1_700_000_000_000 + rng.Int64N(1_000_000),
		})
		b = append(b, m...)
		b = append(b, '\n')
	}
	return b[:n]
}

func randomBytes(n int, rng *rand.Rand) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// TestCompressedPayloadsAreByteExact sends compressible and random payloads
// of 0 B, 1 B, 125 B, 126 B, 64 KiB and 1 MiB to an echo backend, each as
// one compressed message split into frames at random places with pings in
// between; what comes back, compressed or not, is the same bytes.
func TestCompressedPayloadsAreByteExact(t *testing.T) {
	kinds := []struct {
		name string
		gen  func(int, *rand.Rand) []byte
	}{
		{"Compressible", telemetry},
		{"Random", randomBytes},
	}
	for _, kind := range kinds {
		for _, size := range []int{0, 1, 125, 126, 64 << 10, 1 << 20} {
			t.Run(fmt.Sprintf("%s/%d", kind.name, size), func(t *testing.T) {
				t.Parallel()
				rng := rand.New(rand.NewPCG(uint64(size), 7))
				p := kind.gen(size, rng)
				url := serve(t, deflateHandler(mqttws.BackendFunc(echo), mqttws.CompressionOptions{}))
				c, _ := dialOffering(t, url, "permessage-deflate")
				z := deflate(p)
				var cuts []int
				for i := 0; i < rng.IntN(6) && len(z) > 1; i++ {
					cuts = append(cuts, 1+rng.IntN(len(z)-1))
				}
				cuts = sortedUnique(cuts)
				var frames []frame
				for i, f := range compressedFrames(z, cuts...) {
					if i > 0 {
						frames = append(frames, frame{op: ws.OpPing, payload: []byte("between")})
					}
					frames = append(frames, f)
				}
				var raw []byte
				for _, f := range frames {
					raw = append(raw, f.bytes()...)
				}
				sent := make(chan error, 1)
				go func() {
					_, err := c.conn.Write(raw)
					sent <- err
				}()
				got, msgs := c.readEcho(len(p))
				if err := <-sent; err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, p) {
					t.Fatalf("echo of %d bytes differs (%d bytes back)", len(p), len(got))
				}
				c.send(frame{op: ws.OpClose, payload: closeBody(1000, "")})
				c.expectClose(mqttws.CloseNormal)
				// The echo went out compressed where it pays.
				if kind.name == "Compressible" && size >= 64<<10 {
					for _, m := range msgs {
						if !m.compressed {
							t.Errorf("a %d-byte echo of telemetry went out uncompressed", len(m.data))
						}
					}
				}
				if kind.name == "Random" {
					for _, m := range msgs {
						if m.compressed {
							t.Errorf("a %d-byte random echo went out compressed: it cannot shrink", len(m.data))
						}
					}
				}
			})
		}
	}
}

func sortedUnique(xs []int) []int {
	seen := map[int]bool{}
	var out []int
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestCompressedMessageFragments checks fragmented compressed messages:
// one-byte fragments, empty fragments, a close frame inside one, and a
// message ended early by a final deflate block.
func TestCompressedMessageFragments(t *testing.T) {
	p := telemetry(3000, rand.New(rand.NewPCG(1, 2)))
	z := deflate(p)
	everyByte := make([]int, 0, len(z))
	for i := 1; i < len(z); i++ {
		everyByte = append(everyByte, i)
	}
	var final bytes.Buffer
	fw, _ := flate.NewWriter(&final, flate.BestSpeed)
	_, _ = fw.Write([]byte("ended by a final block"))
	_ = fw.Close() // BFINAL: RFC 7692 section 7.2.3.5 allows it
	cases := []struct {
		name   string
		frames []frame
		want   []byte
	}{
		{
			name:   "OneByteFragments",
			frames: compressedFrames(z, everyByte...),
			want:   p,
		},
		{
			name:   "EmptyFragments",
			frames: compressedFrames(z, 0, 0, len(z)/2, len(z)/2, len(z), len(z)),
			want:   p,
		},
		{
			name: "FirstFrameEmpty",
			frames: []frame{
				{op: ws.OpBinary, rsv: 4, notFinal: true},
				{op: ws.OpContinuation, payload: z},
			},
			want: p,
		},
		{
			name:   "EmptyCompressedMessage",
			frames: append(compressedFrames(nil), binaryFrame([]byte("after"))),
			want:   []byte("after"),
		},
		{
			name:   "UncompressedAndCompressedMessagesMix",
			frames: append(append([]frame{binaryFrame([]byte("plain,"))}, compressedFrames(z, 10)...), binaryFrame([]byte(",plain"))),
			want:   concat([]byte("plain,"), p, []byte(",plain")),
		},
		{
			name:   "FinalBlockEndsTheMessageAndTheRestIsSkipped",
			frames: append(compressedFrames(append(final.Bytes(), 0, 0, 0xff, 0xff, 0x42), 4), binaryFrame([]byte("+next"))),
			want:   []byte("ended by a final block+next"),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			url := serve(t, deflateHandler(rec, mqttws.CompressionOptions{}))
			c, _ := dialOffering(t, url, "permessage-deflate")
			c.send(tc.frames...)
			c.send(frame{op: ws.OpClose, payload: closeBody(1000, "")})
			c.expectClose(mqttws.CloseNormal)
			got, err := rec.wait(t)
			if !bytes.Equal(got, tc.want) {
				t.Errorf("backend read %d bytes %.40q, want %d bytes %.40q", len(got), got, len(tc.want), tc.want)
			}
			if err != io.EOF {
				t.Errorf("backend read ended with %v, want io.EOF", err)
			}
		})
	}
	t.Run("CloseInsideAMessageEndsTheStream", func(t *testing.T) {
		t.Parallel()
		rec := newRecorder()
		url := serve(t, deflateHandler(rec, mqttws.CompressionOptions{}))
		c, _ := dialOffering(t, url, "permessage-deflate")
		fs := compressedFrames(z, len(z)/2)
		c.send(fs[0], frame{op: ws.OpClose, payload: closeBody(1001, "gone")})
		c.expectClose(mqttws.CloseGoingAway)
		got, err := rec.wait(t)
		if err != io.EOF || len(got) > len(p) || !bytes.Equal(got, p[:len(got)]) {
			t.Errorf("backend read %d bytes and %v, want a prefix of the message and io.EOF", len(got), err)
		}
	})
}

// zipBomb returns a compressed message that inflates to size zero bytes
// (a multiple of 1 MiB), about a thousand times smaller: one flushed
// megabyte of zeros, repeated (each flush ends byte-aligned, and each
// repetition refers only to zeros).
func zipBomb(size int) []byte {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.BestCompression)
	_, _ = w.Write(make([]byte, 1<<20))
	_ = w.Flush()
	return bytes.Repeat(b.Bytes(), size>>20)
}

// TestZipBombClosesWith1009 checks MaxInflatedSize: a small message that
// inflates to a gigabyte ends the connection with 1009 once the limit is
// passed, quickly, and the backend gets no more than the limit.
func TestZipBombClosesWith1009(t *testing.T) {
	bomb := zipBomb(1 << 30)
	for _, split := range []int{1, 64} {
		t.Run(fmt.Sprintf("In%dFrames", split), func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			const limit = 1 << 20
			url := serve(t, deflateHandler(rec, mqttws.CompressionOptions{MaxInflatedSize: limit}))
			c, _ := dialOffering(t, url, "permessage-deflate")
			var cuts []int
			for i := 1; i < split; i++ {
				cuts = append(cuts, i*len(bomb)/split)
			}
			start := time.Now()
			go func() { // the server stops reading: writes may fail
				for _, f := range compressedFrames(bomb, cuts...) {
					if _, err := c.conn.Write(f.bytes()); err != nil {
						return
					}
				}
			}()
			reason := c.expectClose(mqttws.CloseMessageTooBig)
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("closed after %v: inflating went on past the limit", d)
			}
			if !strings.Contains(reason, fmt.Sprint(limit)) {
				t.Errorf("close reason %q does not name the limit", reason)
			}
			got, _ := rec.wait(t)
			if len(got) > limit {
				t.Errorf("backend read %d bytes, over the limit of %d", len(got), limit)
			}
		})
	}
}

// TestCompressedWrites checks what the server sends: Writes under the
// threshold and those that do not shrink go out uncompressed, others as one
// compressed message each, in frames of at most WriteFrameSize bytes.
func TestCompressedWrites(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	json10k := telemetry(10<<10, rng)
	json100k := telemetry(100<<10, rng)
	random := randomBytes(1000, rng)
	cases := []struct {
		name           string
		opts           mqttws.CompressionOptions
		writeFrameSize int
		writes         [][]byte
		wantCompressed []bool
		maxFrame       int // the largest frame payload allowed; 0: any
	}{
		{
			name:           "UnderTheThresholdGoesOutAsItIs",
			writes:         [][]byte{{0x40, 2, 0, 1}, json10k[:127]},
			wantCompressed: []bool{false, false},
		},
		{
			name:           "AtTheThresholdIsCompressed",
			writes:         [][]byte{bytes.Repeat([]byte(`{"seq":1}`), 15)[:128]},
			wantCompressed: []bool{true},
		},
		{
			name:           "NegativeThresholdCompressesEverything",
			opts:           mqttws.CompressionOptions{Threshold: -1},
			writes:         [][]byte{bytes.Repeat([]byte{'a'}, 20)},
			wantCompressed: []bool{true},
		},
		{
			name:           "RandomBytesGoOutAsTheyAre",
			writes:         [][]byte{random},
			wantCompressed: []bool{false},
		},
		{
			name:           "LargeRandomBytesGoOutAsTheyAre",
			writes:         [][]byte{randomBytes(200<<10, rng)},
			wantCompressed: []bool{false},
		},
		{
			name:           "LargeRandomBytesInSmallFramesGoOutAsTheyAre",
			writeFrameSize: 1000,
			writes:         [][]byte{randomBytes(20<<10, rng)},
			wantCompressed: []bool{false},
		},
		{
			name:           "EachWriteIsOneMessage",
			writes:         [][]byte{json10k, json10k[:500], json100k},
			wantCompressed: []bool{true, true, true},
		},
		{
			name:           "WriteFrameSizeBoundsTheFrames",
			writeFrameSize: 1000,
			writes:         [][]byte{json100k},
			wantCompressed: []bool{true},
			maxFrame:       1000,
		},
		{
			name:           "EveryLevelWorks",
			opts:           mqttws.CompressionOptions{Level: flate.BestCompression},
			writes:         [][]byte{json10k},
			wantCompressed: []bool{true},
		},
		{
			name:           "HuffmanOnlyWorks",
			opts:           mqttws.CompressionOptions{Level: flate.HuffmanOnly},
			writes:         [][]byte{json10k},
			wantCompressed: []bool{true},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			writes := make(chan []byte, len(tc.writes))
			for _, w := range tc.writes {
				writes <- w
			}
			close(writes)
			backend := mqttws.BackendFunc(func(ctx context.Context, c net.Conn) error {
				for w := range writes {
					if _, err := c.Write(w); err != nil {
						return err
					}
				}
				<-ctx.Done()
				return nil
			})
			h := deflateHandler(backend, tc.opts)
			h.WriteFrameSize = tc.writeFrameSize
			c, _ := dialOffering(t, serve(t, h), "permessage-deflate")
			for i, w := range tc.writes {
				m := c.readMessage()
				for !m.compressed && len(m.data) < len(w) { // uncompressed, WriteFrameSize splits a Write in messages
					m.data = append(m.data, c.readMessage().data...)
				}
				if !bytes.Equal(m.data, w) {
					t.Fatalf("message %d: %d bytes differ from the %d written", i, len(m.data), len(w))
				}
				if m.compressed != tc.wantCompressed[i] {
					t.Errorf("message %d of %d bytes: compressed %v, want %v", i, len(w), m.compressed, tc.wantCompressed[i])
				}
				if m.compressed && tc.opts.Level == 0 && len(w) >= 10<<10 && len(m.frames) == 1 && m.frames[0].Length*3 > int64(len(w)) {
					t.Errorf("message %d: %d bytes of JSON compressed to %d, not 3 times smaller", i, len(w), m.frames[0].Length)
				}
				for _, f := range m.frames {
					if tc.maxFrame > 0 && f.Length > int64(tc.maxFrame) {
						t.Errorf("message %d: a frame of %d bytes, over WriteFrameSize %d", i, f.Length, tc.maxFrame)
					}
				}
				if tc.maxFrame > 0 && len(m.frames) < 2 {
					t.Errorf("message %d: %d frame(s), want it split", i, len(m.frames))
				}
			}
		})
	}
}

// TestClientsWithAndWithoutCompressionShareAHandler: on one handler, a
// client that offers compression gets it and one that does not is served
// exactly as before; Stats counts each side.
func TestClientsWithAndWithoutCompressionShareAHandler(t *testing.T) {
	t.Parallel()
	h := deflateHandler(mqttws.BackendFunc(echo), mqttws.CompressionOptions{})
	url := serve(t, h)
	p := telemetry(20<<10, rand.New(rand.NewPCG(5, 6)))

	plain, answer := dialOffering(t, url)
	if answer != "" {
		t.Fatalf("a client offering nothing got Sec-WebSocket-Extensions %q", answer)
	}
	plain.send(binaryFrame(p))
	if got := plain.readData(len(p)); !bytes.Equal(got, p) { // readData fails on RSV bits
		t.Fatal("the uncompressed echo differs")
	}

	c, _ := dialOffering(t, url, "permessage-deflate; client_max_window_bits")
	z := deflate(p)
	c.send(compressedFrames(z)...)
	got, msgs := c.readEcho(len(p))
	if !bytes.Equal(got, p) {
		t.Fatal("the compressed echo differs")
	}
	var wire int64
	for _, m := range msgs {
		if !m.compressed {
			t.Errorf("an echo of %d bytes of telemetry went out uncompressed", len(m.data))
		}
		for _, f := range m.frames {
			wire += f.Length
		}
	}
	for _, cl := range []*client{plain, c} {
		cl.send(frame{op: ws.OpClose, payload: closeBody(1000, "")})
		cl.expectClose(mqttws.CloseNormal)
	}
	waitActive(t, h, 0)

	st := h.Stats()
	if st.Accepted != 2 || st.Compressed != 1 {
		t.Errorf("Accepted %d, Compressed %d; want 2 and 1", st.Accepted, st.Compressed)
	}
	if st.BytesIn != uint64(2*len(p)) || st.CompressedBytesIn != uint64(len(p)) || st.CompressedWireBytesIn != uint64(len(z)) || st.CompressedMessagesIn != 1 {
		t.Errorf("in: BytesIn %d, CompressedBytesIn %d, CompressedWireBytesIn %d, CompressedMessagesIn %d; want %d, %d, %d, 1",
			st.BytesIn, st.CompressedBytesIn, st.CompressedWireBytesIn, st.CompressedMessagesIn, 2*len(p), len(p), len(z))
	}
	if st.BytesOut != uint64(2*len(p)) || st.CompressedBytesOut != uint64(len(p)) || st.CompressedWireBytesOut != uint64(wire) || st.CompressedMessagesOut != uint64(len(msgs)) {
		t.Errorf("out: BytesOut %d, CompressedBytesOut %d, CompressedWireBytesOut %d, CompressedMessagesOut %d; want %d, %d, %d, %d",
			st.BytesOut, st.CompressedBytesOut, st.CompressedWireBytesOut, st.CompressedMessagesOut, 2*len(p), len(p), wire, len(msgs))
	}
}

// TestBadCompressionOptionsAreRefusedWith500: a Handler whose
// CompressionOptions cannot work refuses every upgrade with 500, naming the
// field and its value, and counts the refusal by reason.
func TestBadCompressionOptionsAreRefusedWith500(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		opts     mqttws.CompressionOptions
		wantBody string
		reason   string
	}{
		{
			name:     "LevelOutOfRange",
			opts:     mqttws.CompressionOptions{Level: 10},
			wantBody: "Level 10",
			reason:   "bad_compression_level",
		},
		{
			name:     "HistoryOverTheWindow",
			opts:     mqttws.CompressionOptions{History: mqttws.MaxCompressionHistory + 1},
			wantBody: "History 32769",
			reason:   "bad_compression_history",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := deflateHandler(mqttws.BackendFunc(echo), tc.opts)
			url := serve(t, h)
			addr := strings.TrimPrefix(strings.TrimSuffix(url, "/mqtt"), "ws://")
			req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/mqtt", nil)
			req.Header = upgradeHeader()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(body), tc.wantBody) {
				t.Fatalf("got %d %q, want 500 naming %q", resp.StatusCode, body, tc.wantBody)
			}
			if got := h.Stats().Refused[tc.reason]; got != 1 {
				t.Errorf("Refused[%s] = %d, want 1", tc.reason, got)
			}
		})
	}
}
