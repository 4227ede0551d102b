package mqttws

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// fuzzConn is a net.Conn whose peer is a fixed byte string; what the server
// writes is kept for checking.
type fuzzConn struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func (c *fuzzConn) Read(p []byte) (int, error)       { return c.in.Read(p) }
func (c *fuzzConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *fuzzConn) Close() error                     { return nil }
func (c *fuzzConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *fuzzConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *fuzzConn) SetDeadline(time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzFrameReader feeds arbitrary client bytes to a stream, read with
// varying buffer sizes. It must never panic or hang, never return more bytes
// than were sent, end protocol violations with a close code RFC 6455 allows,
// and only ever write valid server frames.
func FuzzFrameReader(f *testing.F) {
	f.Add([]byte{0x82, 0x85, 1, 2, 3, 4, 'h' ^ 1, 'e' ^ 2, 'l' ^ 3, 'l' ^ 4, 'o' ^ 1}, uint16(3), int64(0))
	f.Fuzz(func(t *testing.T, data []byte, readSize uint16, maxFrame int64) {
		conn := &fuzzConn{in: bytes.NewReader(data)}
		s := newStream(conn, conn, streamConfig{
			pool:         &bufferPool{size: minReadBufferSize},
			maxFrameSize: max(maxFrame, 0),
			settings:     &streamSettings{closeTimeout: time.Second},
		})
		buf := make([]byte, 1+int(readSize)%4096)
		total := 0
		var err error
		for err == nil {
			var n int
			n, err = s.Read(buf)
			total += n
			if total > len(data) {
				t.Fatalf("read %d bytes out of %d sent", total, len(data))
			}
		}
		var ce *CloseError
		if errors.As(err, &ce) && !slices.Contains([]CloseCode{1002, 1003, 1007, 1009}, ce.Code) {
			t.Fatalf("violation closed with %d", ce.Code)
		}
		checkServerFrames(t, conn.out.Bytes(), ce)
	})
}

// checkServerFrames checks that out holds valid unmasked server frames, the
// last being the close frame for ce, when there is one.
func checkServerFrames(t *testing.T, out []byte, ce *CloseError) {
	r := bytes.NewReader(out)
	var last ws.Header
	var lastPayload []byte
	for r.Len() > 0 {
		h, err := ws.ReadHeader(r)
		if err != nil {
			t.Fatalf("server wrote a bad header: %v", err)
		}
		if err := ws.CheckHeader(h, ws.StateClientSide); err != nil {
			t.Fatalf("server wrote an invalid frame %+v: %v", h, err)
		}
		if h.Length > int64(r.Len()) {
			t.Fatalf("server frame of %d bytes with %d left", h.Length, r.Len())
		}
		lastPayload = make([]byte, h.Length)
		_, _ = io.ReadFull(r, lastPayload)
		last = h
	}
	if ce == nil {
		return
	}
	if last.OpCode != ws.OpClose {
		t.Fatalf("stream ended with %v but wrote no close frame", ce)
	}
	if code, _ := ws.ParseCloseFrameData(lastPayload); CloseCode(code) != ce.Code {
		t.Fatalf("close frame carries %d, error says %d", code, ce.Code)
	}
}

// FuzzHandshake checks the request validation and subprotocol choice: no
// panic, a refusal is an HTTP error status with a reason, and an accepted
// subprotocol is always one the client offered and the server serves.
func FuzzHandshake(f *testing.F) {
	f.Add("GET", "websocket", "Upgrade", "dGhlIHNhbXBsZSBub25jZQ==", "13", "mqtt", false)
	f.Fuzz(func(t *testing.T, method, upgrade, connection, key, version, protocols string, allowNone bool) {
		r := httptest.NewRequest(http.MethodGet, "/mqtt", nil)
		r.Method = method
		r.Header = http.Header{
			"Upgrade":                {upgrade},
			"Connection":             {connection},
			"Sec-Websocket-Key":      {key},
			"Sec-Websocket-Version":  {version},
			"Sec-Websocket-Protocol": {protocols},
		}
		prefs := DefaultSubprotocols()
		proto, refusal := checkHandshake(r, prefs, allowNone)
		if refusal != nil {
			if refusal.status < 400 || refusal.status > 599 || refusal.reason == "" {
				t.Fatalf("refusal %d %q", refusal.status, refusal.reason)
			}
		} else {
			offered := offeredSubprotocols(r.Header)
			switch {
			case proto == "" && (!allowNone || len(offered) > 0):
				t.Fatalf("accepted without a subprotocol, offered %q", offered)
			case proto != "" && (!slices.Contains(offered, proto) || !slices.Contains(prefs, proto)):
				t.Fatalf("chose %q, offered %q", proto, offered)
			}
		}
		// The whole handler answers without hijacking what it refuses.
		w := httptest.NewRecorder()
		(&Handler{Backend: BackendFunc(nil), AllowNoSubprotocol: allowNone}).ServeHTTP(w, r)
		if w.Code < 400 {
			t.Fatalf("a recorder (which cannot hijack) got %d", w.Code)
		}
	})
}

// FuzzClientAddr checks the forwarding-header walk: no panic, headers from an
// untrusted peer never change the address, and a reported address always
// comes from the headers or the peer.
func FuzzClientAddr(f *testing.F) {
	f.Add("203.0.113.9, 10.0.0.1", "", "", "127.0.0.1:5000")
	f.Fuzz(func(t *testing.T, xff, forwarded, realIP, peer string) {
		peerAP, err := netip.ParseAddrPort(peer)
		if err != nil {
			return
		}
		peerAddr := net.TCPAddrFromAddrPort(peerAP)
		h := http.Header{}
		if xff != "" {
			h.Set("X-Forwarded-For", xff)
		}
		if forwarded != "" {
			h.Set("Forwarded", forwarded)
		}
		if realIP != "" {
			h.Set("X-Real-Ip", realIP)
		}
		trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
		header := []string{"X-Forwarded-For", "Forwarded", "X-Real-IP"}[len(peer)%3]
		got := clientAddr(peerAddr, h, trusted, header)
		if !isTrusted(peerAP.Addr(), trusted) && got != net.Addr(peerAddr) {
			t.Fatalf("untrusted peer %s reported as %s", peer, got)
		}
		if got == net.Addr(peerAddr) {
			return
		}
		ap, _ := addrPort(got)
		candidates := append(listTokens(h.Values("X-Forwarded-For")), forwardedFor(h.Values("Forwarded"))...)
		candidates = append(candidates, realIP)
		for _, c := range candidates {
			if hop, ok := parseHop(c); ok && hop == ap {
				return
			}
		}
		t.Fatalf("reported %s, found in no header (%q %q %q)", got, xff, forwarded, realIP)
	})
}

// FuzzInflatingReader feeds arbitrary client bytes to a stream that
// negotiated permessage-deflate, read with varying buffer sizes. It must
// never panic or hang, never inflate a message past MaxInflatedSize, end
// protocol violations and bad compressed data with a close code RFC 6455
// allows, and only ever write valid server frames. The seed corpus in
// testdata/fuzz/FuzzInflatingReader holds compressed messages whole,
// fragmented with pings between, in one-byte frames, a small zip bomb and
// broken ones.
func FuzzInflatingReader(f *testing.F) {
	// "hello" compressed, in one masked frame with RSV1.
	f.Add([]byte{0xc1 ^ 0x01 ^ 0x02, 0x87, 0, 0, 0, 0, 0xca, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}, uint16(7))
	const limit = 64 << 10
	f.Fuzz(func(t *testing.T, data []byte, readSize uint16) {
		conn := &fuzzConn{in: bytes.NewReader(data)}
		cfg := (&CompressionOptions{MaxInflatedSize: limit}).config(0)
		s := newStream(conn, conn, streamConfig{
			pool:     &bufferPool{size: minReadBufferSize},
			deflate:  &cfg,
			settings: &streamSettings{closeTimeout: time.Second},
		})
		buf := make([]byte, 1+int(readSize)%4096)
		total := 0
		var err error
		for err == nil {
			var n int
			n, err = s.Read(buf)
			total += n
		}
		// Every message takes a header of 6 bytes at least.
		if max := (len(data)/6 + 1) * limit; total > max {
			t.Fatalf("read %d bytes out of %d sent: more than %d messages of the limit", total, len(data), len(data)/6+1)
		}
		var ce *CloseError
		if errors.As(err, &ce) && !slices.Contains([]CloseCode{1002, 1003, 1007, 1009}, ce.Code) {
			t.Fatalf("violation closed with %d", ce.Code)
		}
		checkServerFrames(t, conn.out.Bytes(), ce)
		if s.deflate.in.f != nil {
			t.Fatal("the decompressor was not given back once reading ended")
		}
	})
}
