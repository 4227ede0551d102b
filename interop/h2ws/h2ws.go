// Package h2ws is a WebSocket client over HTTP/2 (RFC 8441) for tests and
// benchmarks: it opens extended CONNECT streams on one HTTP/2 connection
// with golang.org/x/net/http2 (net/http's own client refuses to send
// :protocol) and speaks client frames on them.
package h2ws

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"golang.org/x/net/http2"
)

// Go 1.26's HTTP/2 server takes extended CONNECT (RFC 8441) only when the
// environment says GODEBUG=http2xconnect=1 at start: a //go:debug line does
// not set it, since net/http reads the variable itself at init.
const XConnectDebug = "http2xconnect=1"

// ReexecWithXConnect runs the test binary again with GODEBUG set, once, so
// that `go test ./...` needs nothing from the caller; the parent then exits
// with the child's status. Call it first in TestMain.
func ReexecWithXConnect() {
	if strings.Contains(os.Getenv("GODEBUG"), XConnectDebug) {
		return
	}
	godebug := XConnectDebug
	if v := os.Getenv("GODEBUG"); v != "" {
		godebug = v + "," + XConnectDebug
	}
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), "GODEBUG="+godebug)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		os.Exit(0)
	case errors.As(err, &ee):
		os.Exit(ee.ExitCode())
	default:
		fmt.Fprintln(os.Stderr, "re-running the tests with GODEBUG="+godebug+":", err)
		os.Exit(1)
	}
}

// Client opens WebSocket streams (RFC 8441) on one HTTP/2 connection.
// It uses golang.org/x/net/http2's client, deprecated in favour of
// net/http's own, because net/http's client refuses to send :protocol.
type Client struct {
	//lint:ignore SA1019 net/http's client cannot send an extended CONNECT
	cc *http2.ClientConn
}

// Dial opens one TLS connection to addr speaking HTTP/2.
func Dial(addr string, tlsConf *tls.Config) (*Client, error) {
	conf := tlsConf.Clone()
	conf.NextProtos = []string{"h2"}
	conn, err := tls.Dial("tcp", addr, conf)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		_ = conn.Close()
		return nil, fmt.Errorf("ALPN chose %q, want h2", p)
	}
	//lint:ignore SA1019 net/http's client cannot send an extended CONNECT
	cc, err := (&http2.Transport{}).NewClientConn(conn)
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("HTTP/2 client connection: %w", err)
	}
	return &Client{cc: cc}, nil
}

// Close closes the HTTP/2 connection.
func (c *Client) Close() error { return c.cc.Close() }

// OpenWithEarlyData is Open with early already written to the request
// body when the request goes out, so that it may reach the server before
// its 200.
func (c *Client) OpenWithEarlyData(ctx context.Context, rawURL string, protocols []string, early []byte) (*Conn, *http.Response, error) {
	return c.openBody(ctx, rawURL, protocols, nil, early)
}

// Open sends an extended CONNECT for rawURL with the given subprotocols and
// header fields. On 200 it returns the stream as a WebSocket client
// connection; otherwise the response (body read) and a nil stream.
func (c *Client) Open(ctx context.Context, rawURL string, protocols []string, extra http.Header) (*Conn, *http.Response, error) {
	return c.openBody(ctx, rawURL, protocols, extra, nil)
}

func (c *Client) openBody(ctx context.Context, rawURL string, protocols []string, extra http.Header, early []byte) (*Conn, *http.Response, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, err
	}
	pr, pw := io.Pipe()
	// ctx bounds the handshake; the stream then lives until Close or Reset.
	streamCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	req := (&http.Request{
		Method: http.MethodConnect,
		URL:    u,
		Host:   u.Host,
		Header: http.Header{
			":protocol":             {"websocket"},
			"Sec-Websocket-Version": {"13"},
		},
		Body:          pr,
		ContentLength: -1,
	}).WithContext(streamCtx)
	if len(protocols) > 0 {
		req.Header.Set("Sec-WebSocket-Protocol", strings.Join(protocols, ", "))
	}
	for k, v := range extra {
		req.Header[k] = v
	}
	if early != nil {
		go func() { _, _ = pw.Write(early) }()
	}
	resp, err := c.cc.RoundTrip(req)
	if err != nil {
		cancel()
		_ = pw.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		_ = resp.Body.Close()
		cancel()
		_ = pw.Close()
		return nil, resp, nil
	}
	s := &Conn{body: resp.Body, pw: pw, cancel: cancel, Subprotocol: resp.Header.Get("Sec-WebSocket-Protocol")}
	s.rd = wsutil.Reader{Source: resp.Body, State: ws.StateClientSide, OnIntermediate: s.control}
	return s, resp, nil
}

// Conn is the client side of a WebSocket over an HTTP/2 stream, as a
// net.Conn: Write sends one masked binary frame, Read returns binary
// payloads, pings are answered, and a close frame ends reading with io.EOF.
// Deadlines are not supported (the tests bound their waits themselves).
type Conn struct {
	body        io.ReadCloser
	pw          *io.PipeWriter
	cancel      context.CancelFunc
	Subprotocol string

	rmu       sync.Mutex
	rd        wsutil.Reader
	inFrame   bool
	wmu       sync.Mutex
	CloseCode ws.StatusCode // the server's close code, once read
}

func (s *Conn) control(h ws.Header, r io.Reader) error {
	p, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ws.Cipher(p, h.Mask, 0)
	switch h.OpCode {
	case ws.OpPing:
		return s.writeFrame(ws.NewPongFrame(p))
	case ws.OpClose:
		code, _ := ws.ParseCloseFrameData(p)
		s.CloseCode = code
		_ = s.writeFrame(ws.NewCloseFrame(p))
		return io.EOF
	}
	return nil
}

// Read reads the payloads of the server's binary frames as one stream,
// answering pings; the server's close frame is answered and ends it with
// io.EOF.
func (s *Conn) Read(p []byte) (int, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	for {
		if s.inFrame {
			n, err := s.rd.Read(p)
			if errors.Is(err, io.EOF) {
				s.inFrame = false
				if n > 0 {
					return n, nil
				}
				continue
			}
			return n, err
		}
		h, err := s.rd.NextFrame()
		if err != nil {
			return 0, err
		}
		if h.OpCode.IsControl() {
			if err := s.control(h, &s.rd); err != nil {
				return 0, err
			}
			continue
		}
		s.inFrame = true
	}
}

// Write sends p as one masked binary frame.
func (s *Conn) Write(p []byte) (int, error) {
	// Masking works in place: never on the caller's slice.
	if err := s.writeFrame(ws.NewBinaryFrame(bytes.Clone(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// RawBody returns the server's bytes as they come, for a test that reads
// frames itself (it must then not call Read).
func (s *Conn) RawBody() io.Reader { return s.body }

// WriteRaw sends bytes as they are (frames a test builds itself).
func (s *Conn) WriteRaw(b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err := s.pw.Write(b)
	return err
}

func (s *Conn) writeFrame(f ws.Frame) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return ws.WriteFrame(s.pw, ws.MaskFrameInPlace(f))
}

// Close sends a close frame and ends the request body.
func (s *Conn) Close() error {
	_ = s.writeFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "")))
	_ = s.pw.Close()
	go func() { // the server's close reply, then the end of the stream
		_, _ = io.Copy(io.Discard, s.body)
		_ = s.body.Close()
		s.cancel()
	}()
	return nil
}

// Reset resets the HTTP/2 stream (RST_STREAM), as a browser tab that dies.
func (s *Conn) Reset() {
	s.cancel()
	_ = s.pw.CloseWithError(errors.New("reset"))
}

// LocalAddr and RemoteAddr name the ends; the deadline methods do nothing.
func (s *Conn) LocalAddr() net.Addr { return h2Addr("client") }

// RemoteAddr names the server end.
func (s *Conn) RemoteAddr() net.Addr { return h2Addr("server") }

// SetDeadline does nothing: deadlines are not supported.
func (s *Conn) SetDeadline(time.Time) error { return nil }

// SetReadDeadline does nothing.
func (s *Conn) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline does nothing.
func (s *Conn) SetWriteDeadline(time.Time) error { return nil }

// Frame encodes a final, masked client frame of opcode op.
func Frame(op byte, payload []byte) []byte {
	f := ws.NewFrame(ws.OpCode(op), true, bytes.Clone(payload))
	var b bytes.Buffer
	if err := ws.WriteFrame(&b, ws.MaskFrameInPlace(f)); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// addr names the ends of a stream, which have no address of their own.
type h2Addr string

func (a h2Addr) Network() string { return "h2" }
func (a h2Addr) String() string  { return string(a) }
