package testbroker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mqttws/mqttws"
)

// wsTimeout bounds each wait of a raw client that has no deadline of its own.
const wsTimeout = 10 * time.Second

// WSClient is a raw WebSocket client (github.com/gobwas/ws) that sends and
// reads single frames, for tests that need control over framing.
type WSClient struct {
	Conn net.Conn
	r    io.Reader
}

// DialWS upgrades a connection to url offering subprotocol "mqtt", and
// closes it when the test ends.
func DialWS(t testing.TB, url string) *WSClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wsTimeout)
	defer cancel()
	d := ws.Dialer{Protocols: []string{"mqtt"}}
	conn, br, hs, err := d.Dial(ctx, url)
	if err != nil {
		t.Fatalf("WebSocket dial %s: %v", url, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if hs.Protocol != "mqtt" {
		t.Fatalf("WebSocket dial %s: subprotocol %q, want %q", url, hs.Protocol, "mqtt")
	}
	c := &WSClient{Conn: conn, r: conn}
	if br != nil {
		// The server may have sent frames right after its handshake
		// response: br holds them, and reads on from conn.
		c.r = br
	}
	return c
}

// WriteFrame masks f and sends it.
func (c *WSClient) WriteFrame(f ws.Frame) error {
	return ws.WriteFrame(c.Conn, ws.MaskFrame(f))
}

// ReadFrame reads the next frame within timeout.
func (c *WSClient) ReadFrame(timeout time.Duration) (ws.Frame, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(timeout))
	defer func() { _ = c.Conn.SetReadDeadline(time.Time{}) }()
	h, err := ws.ReadHeader(c.r)
	if err != nil {
		return ws.Frame{}, err
	}
	if h.Masked {
		return ws.Frame{Header: h}, fmt.Errorf("the server sent a masked %v frame", h.OpCode)
	}
	if h.Length > maxFrameSize {
		return ws.Frame{Header: h}, fmt.Errorf("the server sent a %v frame of %d bytes, over the test client's limit of %d", h.OpCode, h.Length, maxFrameSize)
	}
	f := ws.Frame{Header: h, Payload: make([]byte, h.Length)}
	_, err = io.ReadFull(c.r, f.Payload)
	return f, err
}

// maxFrameSize bounds the frames a WSClient reads.
const maxFrameSize = 16 << 20

// CloseFrame is the close frame a client received.
type CloseFrame struct {
	Code   mqttws.CloseCode
	Reason string
	// DataBefore counts the data bytes received before the close frame.
	DataBefore int
}

// ReadClose reads frames until a close frame, which it answers, for at most
// timeout. Data frames are counted and pings answered on the way.
func (c *WSClient) ReadClose(timeout time.Duration) (CloseFrame, error) {
	deadline := time.Now().Add(timeout)
	var cf CloseFrame
	for {
		f, err := c.ReadFrame(time.Until(deadline))
		if err != nil {
			return cf, fmt.Errorf("no close frame within %v: %w", timeout, err)
		}
		switch f.Header.OpCode {
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(f.Payload)
			cf.Code, cf.Reason = mqttws.CloseCode(code), reason
			_ = c.WriteFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(code, "")))
			return cf, nil
		case ws.OpPing:
			_ = c.WriteFrame(ws.NewPongFrame(f.Payload))
		case ws.OpBinary, ws.OpContinuation:
			cf.DataBefore += len(f.Payload)
		}
	}
}

// ExpectClose reads frames until a close frame and fails the test unless it
// comes within timeout with code.
func (c *WSClient) ExpectClose(t testing.TB, code mqttws.CloseCode, timeout time.Duration) CloseFrame {
	t.Helper()
	cf, err := c.ReadClose(timeout)
	if err != nil {
		t.Fatalf("expected a close frame with code %d: %v", code, err)
	}
	if cf.Code != code {
		t.Fatalf("close frame with code %d (reason %q), want %d", cf.Code, cf.Reason, code)
	}
	return cf
}

// ConnectRaw connects a raw WebSocket client to url, has it send an MQTT
// CONNECT for clientID with a keepalive of 60s, and fails the test unless the
// broker accepts it.
func ConnectRaw(t testing.TB, url, clientID string) *WSClient {
	t.Helper()
	c := DialWS(t, url)
	if err := c.WriteFrame(ws.NewBinaryFrame(ConnectPacket(clientID, 60))); err != nil {
		t.Fatal(err)
	}
	c.ExpectData(t, ConnackAccepted)
	return c
}

// ExpectData reads data frames until it has len(want) bytes, and fails the
// test unless they are want.
func (c *WSClient) ExpectData(t testing.TB, want []byte) {
	t.Helper()
	got, _, err := c.ReadData(len(want), wsTimeout)
	if err != nil {
		t.Fatalf("waiting for % x: %v", want, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got % x, want % x", got, want)
	}
}

// ConnectPacket returns an MQTT 3.1.1 CONNECT packet for clientID with a
// clean session and the given keepalive in seconds.
func ConnectPacket(clientID string, keepalive uint16) []byte {
	return ConnectPacketWithWill(clientID, keepalive, "", nil)
}

// ConnectPacketWithWill returns an MQTT 3.1.1 CONNECT packet for clientID
// with a clean session, the given keepalive in seconds and, when willTopic is
// not empty, a QoS 0 will message.
func ConnectPacketWithWill(clientID string, keepalive uint16, willTopic string, will []byte) []byte {
	flags := byte(0x02) // clean session
	if willTopic != "" {
		flags |= 0x04 // will flag, QoS 0, not retained
	}
	body := []byte{
		0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name
		0x04,  // protocol level: 3.1.1
		flags, // connect flags
		byte(keepalive >> 8), byte(keepalive),
	}
	body = appendString(body, []byte(clientID))
	if willTopic != "" {
		body = appendString(body, []byte(willTopic))
		body = appendString(body, will)
	}
	return Packet(0x10, body)
}

// PublishPacket returns an MQTT QoS 0 PUBLISH packet.
func PublishPacket(topic string, payload []byte) []byte {
	body := appendString(nil, []byte(topic))
	return Packet(0x30, append(body, payload...))
}

// appendString appends s with its 2-byte length (MQTT 1.5.3).
func appendString(b, s []byte) []byte {
	b = append(b, byte(len(s)>>8), byte(len(s)))
	return append(b, s...)
}

// Packet returns a packet of the given first byte and body, with the
// remaining length encoded as MQTT's variable byte integer (MQTT 2.2.3).
func Packet(first byte, body []byte) []byte {
	p := []byte{first}
	n := len(body)
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		p = append(p, b)
		if n == 0 {
			break
		}
	}
	return append(p, body...)
}

// ConnackAccepted is the CONNACK of an accepted MQTT 3.1.1 connection with
// no session present.
var ConnackAccepted = []byte{0x20, 0x02, 0x00, 0x00}

// Disconnect is an MQTT DISCONNECT packet.
var Disconnect = []byte{0xe0, 0x00}

// ReadData reads data frames until it has n bytes of payload, answering
// pings and counting pongs, for at most timeout.
func (c *WSClient) ReadData(n int, timeout time.Duration) (data []byte, pongs [][]byte, err error) {
	deadline := time.Now().Add(timeout)
	for len(data) < n {
		f, err := c.ReadFrame(time.Until(deadline))
		if err != nil {
			return data, pongs, fmt.Errorf("%d of %d bytes within %v: %w", len(data), n, timeout, err)
		}
		switch f.Header.OpCode {
		case ws.OpBinary, ws.OpContinuation:
			data = append(data, f.Payload...)
		case ws.OpPing:
			_ = c.WriteFrame(ws.NewPongFrame(f.Payload))
		case ws.OpPong:
			pongs = append(pongs, f.Payload)
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(f.Payload)
			return data, pongs, fmt.Errorf("%d of %d bytes, then a close frame %d %q", len(data), n, code, reason)
		default:
			return data, pongs, fmt.Errorf("unexpected %v frame", f.Header.OpCode)
		}
	}
	return data, pongs, nil
}
