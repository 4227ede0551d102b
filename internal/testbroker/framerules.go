package testbroker

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"

	"github.com/gobwas/ws"
)

// Frame is a client frame a test sends, valid or not; masked unless
// Unmasked.
type Frame struct {
	Op       ws.OpCode
	NotFinal bool
	Rsv      byte
	Payload  []byte
	Unmasked bool
}

// Bytes encodes the frame, masked with a random key unless Unmasked.
func (f Frame) Bytes() []byte {
	h := ws.Header{
		Fin:    !f.NotFinal,
		Rsv:    f.Rsv,
		OpCode: f.Op,
		Length: int64(len(f.Payload)),
		Masked: !f.Unmasked,
	}
	payload := bytes.Clone(f.Payload)
	if h.Masked {
		_, _ = rand.Read(h.Mask[:])
		ws.Cipher(payload, h.Mask, 0)
	}
	var b bytes.Buffer
	if err := ws.WriteHeader(&b, h); err != nil {
		panic(err)
	}
	b.Write(payload)
	return b.Bytes()
}

// BinaryFrame is a final binary frame of payload p.
func BinaryFrame(p []byte) Frame { return Frame{Op: ws.OpBinary, Payload: p} }

// CloseBody encodes a close frame's body.
func CloseBody(code uint16, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, code), reason...)
}

// FrameRule is a rule of RFC 6455 or of MQTT section 6 that ends the
// connection: what the client sends, and the close code (and a part of the
// reason) it gets.
type FrameRule struct {
	Name         string
	Frames       []Frame
	Raw          []byte // sent after Frames
	MaxFrameSize int64  // the handler's
	Code         uint16
	Reason       string // a part of the close reason
}

// Wire returns the bytes the client sends.
func (r FrameRule) Wire() []byte {
	var b []byte
	for _, f := range r.Frames {
		b = append(b, f.Bytes()...)
	}
	return append(b, r.Raw...)
}

// FrameRules are the rules every transport must enforce alike: the root
// package's tests run them over TCP, interop's over HTTP/2 streams.
var FrameRules = []FrameRule{
	{
		Name:   "TextFrameClosesWith1003",
		Frames: []Frame{{Op: ws.OpText, Payload: []byte("hi")}},
		Code:   1003,
		Reason: "MQTT-6.0.0-1",
	},
	{
		Name:   "TextFrameAfterBinaryClosesWith1003",
		Frames: []Frame{BinaryFrame([]byte("ok")), {Op: ws.OpText, Payload: []byte("x")}},
		Code:   1003,
	},
	{
		Name:   "UnmaskedFrameClosesWith1002",
		Frames: []Frame{{Op: ws.OpBinary, Payload: []byte("x"), Unmasked: true}},
		Code:   1002,
		Reason: "masked",
	},
	{
		Name:   "RSV1WithoutExtensionClosesWith1002",
		Frames: []Frame{{Op: ws.OpBinary, Rsv: 4, Payload: []byte("x")}},
		Code:   1002,
		Reason: "rsv",
	},
	{
		Name:   "RSV3WithoutExtensionClosesWith1002",
		Frames: []Frame{{Op: ws.OpBinary, Rsv: 1, Payload: []byte("x")}},
		Code:   1002,
	},
	{
		Name:   "ReservedDataOpcodeClosesWith1002",
		Frames: []Frame{{Op: 0x3, Payload: []byte("x")}},
		Code:   1002,
		Reason: "reserved",
	},
	{
		Name:   "ReservedControlOpcodeClosesWith1002",
		Frames: []Frame{{Op: 0xB}},
		Code:   1002,
	},
	{
		Name:   "ControlFrameOver125BytesClosesWith1002",
		Frames: []Frame{{Op: ws.OpPing, Payload: make([]byte, 126)}},
		Code:   1002,
	},
	{
		Name:   "FragmentedControlFrameClosesWith1002",
		Frames: []Frame{{Op: ws.OpPing, NotFinal: true}},
		Code:   1002,
	},
	{
		Name:   "ContinuationWithoutStartClosesWith1002",
		Frames: []Frame{{Op: ws.OpContinuation, Payload: []byte("x")}},
		Code:   1002,
	},
	{
		Name: "NewDataFrameInsideFragmentedMessageClosesWith1002",
		Frames: []Frame{
			{Op: ws.OpBinary, NotFinal: true, Payload: []byte("ok")},
			BinaryFrame([]byte("x")),
		},
		Code: 1002,
	},
	{
		Name:   "CloseBodyOf1ByteClosesWith1002",
		Frames: []Frame{{Op: ws.OpClose, Payload: []byte{3}}},
		Code:   1002,
	},
	{
		Name:   "CloseCode999ClosesWith1002",
		Frames: []Frame{{Op: ws.OpClose, Payload: CloseBody(999, "")}},
		Code:   1002,
	},
	{
		Name:   "CloseCode1004ClosesWith1002",
		Frames: []Frame{{Op: ws.OpClose, Payload: CloseBody(1004, "")}},
		Code:   1002,
	},
	{
		Name:   "CloseCode1005ClosesWith1002",
		Frames: []Frame{{Op: ws.OpClose, Payload: CloseBody(1005, "")}},
		Code:   1002,
	},
	{
		Name:   "CloseCode1006ClosesWith1002",
		Frames: []Frame{{Op: ws.OpClose, Payload: CloseBody(1006, "")}},
		Code:   1002,
	},
	{
		Name:   "CloseCode1015ClosesWith1002",
		Frames: []Frame{{Op: ws.OpClose, Payload: CloseBody(1015, "")}},
		Code:   1002,
	},
	{
		Name:   "CloseCode2999ClosesWith1002",
		Frames: []Frame{{Op: ws.OpClose, Payload: CloseBody(2999, "")}},
		Code:   1002,
	},
	{
		Name:   "CloseCode5000ClosesWith1002",
		Frames: []Frame{{Op: ws.OpClose, Payload: CloseBody(5000, "")}},
		Code:   1002,
	},
	{
		Name:   "InvalidUTF8CloseReasonClosesWith1007",
		Frames: []Frame{{Op: ws.OpClose, Payload: CloseBody(1000, "bad \xff\xfe")}},
		Code:   1007,
	},
	{
		Name:   "LengthWithHighBitSetClosesWith1002",
		Raw:    []byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4},
		Code:   1002,
		Reason: "most significant bit",
	},
	{
		Name:         "FrameOverMaxFrameSizeClosesWith1009",
		Frames:       []Frame{BinaryFrame(make([]byte, 100)), BinaryFrame(make([]byte, 101))},
		MaxFrameSize: 100,
		Code:         1009,
		Reason:       "101",
	},
	{
		Name:         "DeclaredHugeFrameOverMaxFrameSizeClosesWith1009",
		Raw:          []byte{0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4},
		MaxFrameSize: 1 << 20,
		Code:         1009,
	},
}
