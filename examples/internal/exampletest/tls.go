package exampletest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// WSS is a WebSocket client over TLS, offering subprotocol "mqtt".
type WSS struct {
	Conn net.Conn
	// Serial is the serial number of the certificate the server showed.
	Serial *big.Int
	r      io.Reader
}

// DialWSS opens a WebSocket to url (wss://...) trusting the certificates
// in roots, and closes it when the test ends.
func DialWSS(t testing.TB, url string, roots *x509.CertPool) *WSS {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	d := ws.Dialer{Protocols: []string{"mqtt"}, TLSConfig: &tls.Config{RootCAs: roots}}
	conn, br, hs, err := d.Dial(ctx, url)
	if err != nil {
		t.Fatalf("WebSocket dial %s: %v", url, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if hs.Protocol != "mqtt" {
		t.Fatalf("WebSocket dial %s: subprotocol %q, want mqtt", url, hs.Protocol)
	}
	tc, ok := conn.(*tls.Conn)
	if !ok {
		t.Fatalf("WebSocket dial %s: a %T, not a TLS connection", url, conn)
	}
	c := &WSS{Conn: conn, Serial: tc.ConnectionState().PeerCertificates[0].SerialNumber, r: conn}
	if br != nil {
		c.r = br // it may hold frames sent right after the handshake
	}
	return c
}

// Send sends p as one binary message.
func (c *WSS) Send(p []byte) error {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	return wsutil.WriteClientBinary(c.Conn, p)
}

// Receive reads messages until it has n bytes of data (answering pings on
// the way), for at most ioTimeout.
func (c *WSS) Receive(n int) ([]byte, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(ioTimeout))
	defer func() { _ = c.Conn.SetReadDeadline(time.Time{}) }()
	rw := struct {
		io.Reader
		io.Writer
	}{c.r, c.Conn}
	var got []byte
	for len(got) < n {
		p, _, err := wsutil.ReadServerData(rw)
		if err != nil {
			return got, fmt.Errorf("after %d of %d bytes: %w", len(got), n, err)
		}
		got = append(got, p...)
	}
	return got, nil
}

// ServedSerial opens a TLS connection to addr trusting the certificates in
// roots, and returns the serial number of the certificate the server
// showed.
func ServedSerial(addr string, roots *x509.CertPool) (*big.Int, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: ioTimeout}, Config: &tls.Config{RootCAs: roots}}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber, nil
}

// HTTPSClient returns an HTTP client that trusts the certificates in roots
// and speaks HTTP/2 when the server does, as browsers do.
func HTTPSClient(t testing.TB, roots *x509.CertPool) *http.Client {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: ioTimeout}
}

// WaitServedSerial waits for new TLS handshakes with addr to show the
// certificate with serial want, for at most timeout, and fails the test
// otherwise. It returns how long that took.
func WaitServedSerial(t testing.TB, addr string, roots *x509.CertPool, want *big.Int, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got, err := ServedSerial(addr, roots)
		if err == nil && got.Cmp(want) == 0 {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("new TLS handshakes with %s show serial %X (%v) %v after the change, want %X", addr, got, err, timeout, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
