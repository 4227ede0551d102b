package pahotest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// DialGorilla opens a WebSocket to rawURL with gorilla/websocket offering
// permessage-deflate (with no context takeover, the only form gorilla has)
// and subprotocol mqtt, and returns it as a net.Conn with the extensions the
// server accepted. paho's own WebSocket dialer turns compression off; give
// this to paho through an OpenFunc (ConnectOver) or
// SetCustomOpenConnectionFn.
func DialGorilla(rawURL string, timeout time.Duration) (net.Conn, string, error) {
	d := &websocket.Dialer{
		HandshakeTimeout:  timeout,
		EnableCompression: true,
		Subprotocols:      []string{"mqtt"},
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, resp, err := d.DialContext(ctx, rawURL, nil)
	if err != nil {
		return nil, "", fmt.Errorf("pahotest: dial %s: %w", rawURL, err)
	}
	return &gorillaConn{Conn: c}, resp.Header.Get("Sec-WebSocket-Extensions"), nil
}

// gorillaConn is a gorilla/websocket connection as a net.Conn: binary
// messages both ways, one Write a message, messages read as one stream.
// Writes and write deadlines share a lock (gorilla reads its write deadline
// while writing).
type gorillaConn struct {
	*websocket.Conn
	rmu sync.Mutex
	r   io.Reader
	wmu sync.Mutex
}

func (c *gorillaConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if c.r == nil {
			_, r, err := c.NextReader()
			if err != nil {
				return 0, err
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *gorillaConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *gorillaConn) SetDeadline(t time.Time) error {
	return errors.Join(c.SetReadDeadline(t), c.SetWriteDeadline(t))
}

func (c *gorillaConn) SetWriteDeadline(t time.Time) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}
