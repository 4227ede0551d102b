package testbroker

import (
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mqttws/mqttws"
)

// Departure is a way a client leaves: a backend must not call any of them a
// failure of its own.
type Departure struct {
	Name string
	// Connect says whether the client is connected (CONNACK read) before
	// End; otherwise it has sent the first bytes of its CONNECT only.
	Connect bool
	// End ends the connection of c.
	End func(t *testing.T, c *WSClient)
}

// Departures are the ways a connected client leaves that every backend
// meets: a close frame (a tab closed), TCP dropped between frames or inside
// one, and DISCONNECT.
func Departures() []Departure {
	return []Departure{
		{
			Name:    "client sends a close frame (a tab closed)",
			Connect: true,
			End: func(t *testing.T, c *WSClient) {
				if err := c.WriteFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusGoingAway, "tab closed"))); err != nil {
					t.Fatal(err)
				}
				c.ExpectClose(t, mqttws.CloseGoingAway, 5*time.Second)
			},
		},
		{
			Name:    "client drops TCP between frames",
			Connect: true,
			End:     func(_ *testing.T, c *WSClient) { _ = c.Conn.Close() },
		},
		{
			Name:    "client drops TCP inside a frame",
			Connect: true,
			End: func(t *testing.T, c *WSClient) {
				c.WriteFramePrefix(t, PublishPacket("a/b", make([]byte, 90)), 10)
				_ = c.Conn.Close()
			},
		},
		{
			Name:    "client sends DISCONNECT",
			Connect: true,
			End: func(t *testing.T, c *WSClient) {
				if err := c.WriteFrame(ws.NewBinaryFrame(Disconnect)); err != nil {
					t.Fatal(err)
				}
				c.ExpectClose(t, mqttws.CloseNormal, 5*time.Second)
			},
		},
	}
}

// WriteFramePrefix writes the header of a binary frame carrying p and only
// its first n payload bytes: the client then stops inside the frame.
func (c *WSClient) WriteFramePrefix(t *testing.T, p []byte, n int) {
	t.Helper()
	h := ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(len(p)), Masked: true, Mask: ws.NewMask()}
	if err := ws.WriteHeader(c.Conn, h); err != nil {
		t.Fatal(err)
	}
	prefix := append([]byte{}, p[:n]...)
	ws.Cipher(prefix, h.Mask, 0)
	if _, err := c.Conn.Write(prefix); err != nil {
		t.Fatal(err)
	}
}
