package exampletest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// ioTimeout bounds each exchange of the helpers below.
const ioTimeout = 5 * time.Second

// Dial connects to addr from the loopback address from (such as
// "127.0.0.2"), and closes the connection when the test ends.
func Dial(t testing.TB, from, addr string) net.Conn {
	t.Helper()
	c, err := DialFrom(from, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// DialFrom connects to addr from the loopback address from.
func DialFrom(from, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: ioTimeout}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s from %s: %w", addr, from, err)
	}
	return c, nil
}

// Roundtrip sends the request text req (with its blank line) on c and reads
// the response's status and body, for at most ioTimeout.
func Roundtrip(c net.Conn, br *bufio.Reader, req string) (int, string, error) {
	status, _, body, err := roundtrip(c, br, req)
	return status, body, err
}

// roundtrip is Roundtrip with the response's header.
func roundtrip(c net.Conn, br *bufio.Reader, req string) (int, http.Header, string, error) {
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	if _, err := io.WriteString(c, req); err != nil {
		return 0, nil, "", err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp.StatusCode, resp.Header, "", nil
	}
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body), err
}

// OpenIdle opens n connections from the address from to addr, each of
// which gets an answer to one GET of a page that is not there and then
// stays open, idle, as a browser keeps it. It returns those that were
// answered (closed when the test ends) and the count of the others, which
// the server refused or closed.
func OpenIdle(t testing.TB, from, addr string, n int) (open []net.Conn, refused int) {
	t.Helper()
	req := "GET /nothing-here HTTP/1.1\r\nHost: " + addr + "\r\n\r\n"
	for range n {
		c, err := DialFrom(from, addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := Roundtrip(c, bufio.NewReader(c), req); err != nil {
			refused++
			_ = c.Close()
			continue
		}
		t.Cleanup(func() { _ = c.Close() })
		open = append(open, c)
	}
	return open, refused
}

// SlowPost opens a connection from the address from to addr that sends a
// POST announcing a body of 100,000 bytes, and never sends the body.
func SlowPost(t testing.TB, from, addr string) net.Conn {
	t.Helper()
	c := Dial(t, from, addr)
	req := "POST /mqtt HTTP/1.1\r\nHost: " + addr + "\r\nContent-Length: 100000\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	return c
}

// Handshake is a WebSocket handshake request.
type Handshake struct {
	From   string // the client's loopback address
	Addr   string // the server's host:port
	Path   string
	Host   string // the Host header; empty means Addr
	Origin string // the Origin header; empty means none
	// Extensions is the Sec-WebSocket-Extensions header; empty means none.
	Extensions string
}

// Status sends the handshake on a new connection and returns the status of
// the answer (101 when upgraded) and its body. The connection is closed.
func (h Handshake) Status() (int, string, error) {
	status, _, body, err := h.Answer()
	return status, body, err
}

// Answer is Status with the answer's header.
func (h Handshake) Answer() (int, http.Header, string, error) {
	c, err := DialFrom(h.From, h.Addr)
	if err != nil {
		return 0, nil, "", err
	}
	defer c.Close()
	host := h.Host
	if host == "" {
		host = h.Addr
	}
	var req strings.Builder
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\n", h.Path, host)
	req.WriteString("Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n")
	req.WriteString("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: mqtt\r\n")
	if h.Origin != "" {
		fmt.Fprintf(&req, "Origin: %s\r\n", h.Origin)
	}
	if h.Extensions != "" {
		fmt.Fprintf(&req, "Sec-WebSocket-Extensions: %s\r\n", h.Extensions)
	}
	req.WriteString("\r\n")
	return roundtrip(c, bufio.NewReader(c), req.String())
}

// WaitClosed waits for the server to close c, reading and dropping what it
// sends, for at most d. It returns how long that took, and an error if c is
// still open after d.
func WaitClosed(c net.Conn, d time.Duration) (time.Duration, error) {
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(d))
	_, err := io.Copy(io.Discard, c)
	took := time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return took, fmt.Errorf("the server did not close the connection within %v", d)
	}
	return took, nil
}
