package mqttws_test

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/gobwas/ws"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/internal/testbroker"
)

// TestProtocolViolationsClose checks each rule of RFC 6455 and MQTT section
// 6 that ends the connection (testbroker.FrameRules, which interop runs over
// HTTP/2 too): the client gets a close frame with the code the rule gives,
// then the server drops TCP, and the backend sees only the bytes sent before
// the violation.
func TestProtocolViolationsClose(t *testing.T) {
	for _, rule := range testbroker.FrameRules {
		t.Run(rule.Name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			url := serve(t, &mqttws.Handler{Backend: rec, MaxFrameSize: rule.MaxFrameSize})
			c := dial(t, url)
			c.sendRaw(rule.Wire())
			code := mqttws.CloseCode(rule.Code)
			reason := c.expectClose(code)
			if !strings.Contains(strings.ToLower(reason), strings.ToLower(rule.Reason)) {
				t.Errorf("close reason %q does not mention %q", reason, rule.Reason)
			}
			_, err := rec.wait(t)
			var ce *mqttws.CloseError
			if !asCloseError(err, &ce) || ce.Code != code {
				t.Errorf("backend read error %v, want a *CloseError with code %d", err, code)
			}
		})
	}
}

// TestStreamIgnoresFrameBoundaries checks MQTT-6.0.0-2: the backend reads the
// concatenated payload of binary frames whatever their split, with control
// frames anywhere between them.
func TestStreamIgnoresFrameBoundaries(t *testing.T) {
	connect := []byte{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 0}
	pingreq := []byte{0xc0, 0}
	cases := []struct {
		name   string
		frames []frame
		want   []byte
	}{
		{
			name:   "OnePacketInOneFrame",
			frames: []frame{binaryFrame(connect)},
			want:   connect,
		},
		{
			name:   "SeveralPacketsInOneFrame",
			frames: []frame{binaryFrame(concat(connect, pingreq, pingreq))},
			want:   concat(connect, pingreq, pingreq),
		},
		{
			name:   "OnePacketOverManyFrames",
			frames: oneByteFrames(connect),
			want:   connect,
		},
		{
			name: "EmptyFramesAnywhere",
			frames: []frame{
				binaryFrame(nil), binaryFrame(connect[:3]), binaryFrame(nil),
				binaryFrame(connect[3:]), binaryFrame(nil),
			},
			want: connect,
		},
		{
			name: "ContinuationFrames",
			frames: []frame{
				{op: ws.OpBinary, notFinal: true, payload: connect[:5]},
				{op: ws.OpContinuation, notFinal: true, payload: nil},
				{op: ws.OpContinuation, notFinal: true, payload: connect[5:9]},
				{op: ws.OpContinuation, payload: connect[9:]},
				binaryFrame(pingreq),
			},
			want: concat(connect, pingreq),
		},
		{
			name: "ControlFramesBetweenFragments",
			frames: []frame{
				{op: ws.OpBinary, notFinal: true, payload: connect[:5]},
				{op: ws.OpPing, payload: []byte("p1")},
				{op: ws.OpContinuation, notFinal: true, payload: connect[5:9]},
				{op: ws.OpPong, payload: []byte("unsolicited")},
				{op: ws.OpContinuation, payload: connect[9:]},
			},
			want: connect,
		},
		{
			name: "PacketAndAPieceOfTheNextInOneFrame",
			frames: []frame{
				binaryFrame(concat(connect, pingreq[:1])),
				binaryFrame(pingreq[1:]),
			},
			want: concat(connect, pingreq),
		},
		{
			name:   "FrameWith16BitLength",
			frames: []frame{binaryFrame(bytes.Repeat([]byte{7}, 126)), binaryFrame(bytes.Repeat([]byte{8}, 65535))},
			want:   concat(bytes.Repeat([]byte{7}, 126), bytes.Repeat([]byte{8}, 65535)),
		},
		{
			name:   "FrameWith64BitLength",
			frames: []frame{binaryFrame(bytes.Repeat([]byte{9}, 65536))},
			want:   bytes.Repeat([]byte{9}, 65536),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			url := serve(t, &mqttws.Handler{Backend: rec})
			c := dial(t, url)
			c.send(tc.frames...)
			c.send(frame{op: ws.OpClose, payload: closeBody(1000, "")})
			c.expectClose(mqttws.CloseNormal)
			got, err := rec.wait(t)
			if !bytes.Equal(got, tc.want) {
				t.Errorf("backend read %x, want %x", got, tc.want)
			}
			if err == nil || err.Error() != "EOF" {
				t.Errorf("backend read ended with %v, want io.EOF", err)
			}
		})
	}
}

// TestControlFrames checks the control frames the stream answers itself.
func TestControlFrames(t *testing.T) {
	t.Run("PingGetsPongWithSamePayload", func(t *testing.T) {
		t.Parallel()
		c := dial(t, serve(t, &mqttws.Handler{Backend: newRecorder()}))
		for _, p := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte{0xa5}, 125)} {
			c.send(frame{op: ws.OpPing, payload: p})
			h, got, err := c.readFrame()
			if err != nil || h.OpCode != ws.OpPong || !bytes.Equal(got, p) {
				t.Fatalf("got %v %x %v, want a pong with %x", h.OpCode, got, err, p)
			}
		}
	})
	t.Run("PingWithNonMinimalLengthIsAnswered", func(t *testing.T) {
		t.Parallel()
		c := dial(t, serve(t, &mqttws.Handler{Backend: newRecorder()}))
		// A 3-byte payload declared in the 16-bit length form, unmasked
		// with a zero mask: the payload bytes come after the header.
		c.sendRaw([]byte{0x89, 0xfe, 0x00, 0x03, 0, 0, 0, 0, 'a', 'b', 'c'})
		h, got, err := c.readFrame()
		if err != nil || h.OpCode != ws.OpPong || string(got) != "abc" {
			t.Fatalf("got %v %q %v, want a pong with abc", h.OpCode, got, err)
		}
	})
	t.Run("UnsolicitedPongIsIgnored", func(t *testing.T) {
		t.Parallel()
		c := dial(t, serve(t, &mqttws.Handler{Backend: mqttws.BackendFunc(echo)}))
		c.send(frame{op: ws.OpPong, payload: []byte("?")}, binaryFrame([]byte("data")))
		if got := c.readData(4); string(got) != "data" {
			t.Fatalf("echo %q after a pong, want %q", got, "data")
		}
	})
	for _, code := range []uint16{1000, 1001, 1011, 1013, 3000, 4999} {
		t.Run("CloseIsEchoedWith"+strconv.Itoa(int(code)), func(t *testing.T) {
			t.Parallel()
			rec := newRecorder()
			c := dial(t, serve(t, &mqttws.Handler{Backend: rec}))
			c.send(frame{op: ws.OpClose, payload: closeBody(code, "bye")})
			c.expectClose(mqttws.CloseCode(code))
			if _, err := rec.wait(t); err == nil || err.Error() != "EOF" {
				t.Errorf("backend read ended with %v, want io.EOF", err)
			}
		})
	}
	t.Run("EmptyCloseIsEchoedEmpty", func(t *testing.T) {
		t.Parallel()
		c := dial(t, serve(t, &mqttws.Handler{Backend: newRecorder()}))
		c.send(frame{op: ws.OpClose})
		h, p, err := c.readFrame()
		if err != nil || h.OpCode != ws.OpClose || len(p) != 0 {
			t.Fatalf("got %v %x %v, want an empty close frame", h.OpCode, p, err)
		}
		c.expectEOF()
	})
}

func concat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func oneByteFrames(p []byte) []frame {
	var fs []frame
	for i := range p {
		fs = append(fs, binaryFrame(p[i:i+1]))
	}
	return fs
}
