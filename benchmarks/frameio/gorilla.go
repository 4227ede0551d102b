package frameio

import (
	"errors"
	"io"
	"sync"

	"github.com/gorilla/websocket"
)

// gorillaBridge adapts a gorilla/websocket connection to a stream the way
// mochi-mqtt v2.7.9 does in listeners/websocket.go (wsConn): Read fills p
// from the current message's NextReader, moving to the next message once
// one ends; Write sends p as one binary message with WriteMessage.
type gorillaBridge struct {
	c      *websocket.Conn
	r      io.Reader // the current message, nil between messages
	once   sync.Once
	closed chan struct{}
}

func newGorillaBridge(c *websocket.Conn) *gorillaBridge {
	return &gorillaBridge{c: c, closed: make(chan struct{})}
}

// errNotBinary is mochi's ErrInvalidMessage.
var errNotBinary = errors.New("message type not binary")

// Read is mochi's wsConn.Read: it returns once p is full or the message
// ends.
func (g *gorillaBridge) Read(p []byte) (int, error) {
	if g.r == nil {
		op, r, err := g.c.NextReader()
		if err != nil {
			return 0, err
		}
		if op != websocket.BinaryMessage {
			return 0, errNotBinary
		}
		g.r = r
	}
	n := 0
	for n < len(p) {
		m, err := g.r.Read(p[n:])
		n += m
		if err != nil {
			g.r = nil
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return n, err
		}
	}
	return n, nil
}

// Write is mochi's wsConn.Write.
func (g *gorillaBridge) Write(p []byte) (int, error) {
	if err := g.c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close drops the TCP connection without a close frame, as mochi does.
func (g *gorillaBridge) Close() error {
	err := g.c.UnderlyingConn().Close()
	g.once.Do(func() { close(g.closed) })
	return err
}
