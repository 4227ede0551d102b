package mqttws

import (
	"bytes"
	"net/http"
	"sync/atomic"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws/wsflate"
	"github.com/klauspost/compress/flate"
)

// permessage-deflate (RFC 7692). Compressors and decompressors come from
// pools for the length of one message, so that an idle connection holds
// neither: a compressor is hundreds of KiB and a decompressor about 40 KiB,
// which context takeover would keep per connection, at 10 to 30 times the
// memory of an idle connection. What context takeover gains on small
// messages the server keeps for its own messages by other means: a short
// history of the bytes it sent (CompressionOptions.History), given to the
// pooled compressor as its dictionary.
//
// The compressor is github.com/klauspost/compress/flate, not
// compress/flate: measured here on 300-byte JSON messages at level 1, it
// compresses in a third of the time, its output is a little smaller, and
// only it can start from a dictionary without allocating a compressor
// (Writer.ResetDict), which History needs.

// Defaults of the CompressionOptions fields whose zero value means "the
// default".
const (
	// DefaultCompressionLevel is flate.BestSpeed: the fastest level, and
	// levels 1 to 6 all reset in constant time for each message.
	DefaultCompressionLevel = flate.BestSpeed
	// DefaultCompressionThreshold is the size under which a Write goes out
	// uncompressed: MQTT acknowledgements and pings (2 to 5 bytes), and most
	// packets under it, gain nothing from deflate's headers and Huffman
	// tables.
	DefaultCompressionThreshold = 128
	// DefaultMaxInflatedSize bounds what one compressed message from a
	// client may inflate to (deflate reaches a ratio of about 1000:1).
	DefaultMaxInflatedSize = 16 << 20
	// MaxCompressionHistory is the largest CompressionOptions.History:
	// deflate's window.
	MaxCompressionHistory = 32 << 10
)

// CompressionOptions configures permessage-deflate (RFC 7692), the
// WebSocket compression that browsers and Node's ws offer on every
// connection. A client that does not offer it is served uncompressed.
//
// The server asks for client_no_context_takeover: every message from the
// client is inflated on its own, by a decompressor taken from a pool for
// the length of that message. Its own messages are compressed by a
// compressor taken from a pool for the length of one Write, from scratch
// (server_no_context_takeover) unless History is set. An offer the server
// cannot honor (server_max_window_bits below 15: the compressor's window is
// always 32 KiB) is declined, and the connection is served uncompressed.
type CompressionOptions struct {
	// Level is the compression level of the messages sent: 1
	// (flate.BestSpeed) to 9 (flate.BestCompression), -1
	// (flate.DefaultCompression, level 5) or -2 (flate.HuffmanOnly). Zero
	// means DefaultCompressionLevel. Levels 7 to 9 clear their hash tables
	// for every message, which costs more than small messages gain.
	Level int

	// Threshold is the size in bytes under which a Write goes out
	// uncompressed (RSV1 clear). Zero means DefaultCompressionThreshold; a
	// negative value compresses every Write. Writes that would not shrink
	// go out uncompressed too: one whose last 512 bytes look random (nearly
	// as many distinct byte values as random bytes hold: media,
	// ciphertext) is not even tried; one whose compressed form fits one
	// frame goes out as it is when that form is not smaller; a larger one
	// when its first half-frame (8 KiB, or half of WriteFrameSize) shrinks
	// by less than an eighth.
	Threshold int

	// History is how many bytes of the messages it sent compressed before
	// the server may refer to when it compresses the next one: RFC 7692's
	// context takeover on the server's side, kept as those bytes rather
	// than as a compressor. A connection holds up to History bytes from its
	// first compressed message on; the compressor stays pooled. Small
	// messages that repeat the previous ones' keys, as JSON telemetry does,
	// shrink much more: 300-byte JSON messages 3.7 times instead of 2 with
	// 1024. The cost is CPU: the compressor reads the history again for
	// every message (a few µs per KiB). Zero (the default) keeps no history
	// and answers server_no_context_takeover; so does a client offer with
	// server_no_context_takeover. At most MaxCompressionHistory.
	History int

	// MaxInflatedSize bounds the size a compressed message from a client
	// may inflate to; past it the connection closes with 1009
	// (CloseMessageTooBig). Messages are inflated as they are read, never
	// held whole, so the bound is on CPU, not memory: a small message that
	// inflates to gigabytes (a "zip bomb") costs what a message of this size
	// costs, and no more. Zero means DefaultMaxInflatedSize; a negative
	// value sets no limit.
	MaxInflatedSize int64
}

// validCompressionLevel reports whether the compressor takes level; zero
// stands for the default.
func validCompressionLevel(level int) bool {
	return level >= flate.HuffmanOnly && level <= flate.BestCompression
}

// deflateConfig is what a stream takes from CompressionOptions.
type deflateConfig struct {
	level       int
	threshold   int   // Writes of at least this many bytes are compressed
	maxInflated int64 // 0: no limit
	frameSize   int   // compressed payload bytes per frame
	history     int   // bytes of history kept; 0: no context takeover
}

func (o *CompressionOptions) config(writeFrameSize int) deflateConfig {
	c := deflateConfig{
		level:       o.Level,
		threshold:   o.Threshold,
		maxInflated: orDefault(o.MaxInflatedSize, DefaultMaxInflatedSize),
		frameSize:   deflateBufferSize - len(syncMarker),
		history:     max(o.History, 0),
	}
	if c.level == 0 {
		c.level = DefaultCompressionLevel
	}
	switch {
	case c.threshold == 0:
		c.threshold = DefaultCompressionThreshold
	case c.threshold < 0:
		c.threshold = 1
	}
	if writeFrameSize > 0 {
		c.frameSize = min(c.frameSize, writeFrameSize)
	}
	return c
}

// negotiateDeflate picks the first permessage-deflate offer of the request
// that the server can honor (RFC 7692 section 5) and returns the
// Sec-WebSocket-Extensions value that accepts it, or "" to decline them all.
// An offer with unknown, repeated or invalid parameters is declined, as the
// RFC asks, not the handshake. (wsflate.Extension is not used: it declines
// any offer naming server_max_window_bits unless configured to always
// answer with it, and then it accepts values it cannot honor.) With history
// set, the server keeps its context unless the offer asks it not to;
// takeover reports whether it does.
func negotiateDeflate(h http.Header, history bool) (extension string, takeover bool) {
	for _, v := range h.Values("Sec-WebSocket-Extensions") {
		offers, _ := httphead.ParseOptions([]byte(v), nil)
		for _, offer := range offers {
			if !bytes.Equal(offer.Name, wsflate.ExtensionNameBytes) {
				continue
			}
			var p wsflate.Parameters
			if err := p.Parse(offer); err != nil {
				continue
			}
			if p.ServerMaxWindowBits.Defined() && p.ServerMaxWindowBits < 15 {
				continue // the compressor's window is always 32 KiB
			}
			takeover = history && !p.ServerNoContextTakeover
			accept := wsflate.Parameters{
				ServerNoContextTakeover: !takeover,
				ClientNoContextTakeover: true,
				// An offer naming it must get it back (RFC 7692 7.1.2.1).
				ServerMaxWindowBits: p.ServerMaxWindowBits,
			}
			var b bytes.Buffer
			if _, err := httphead.WriteOptions(&b, []httphead.Option{accept.Option()}); err != nil {
				continue
			}
			return b.String(), takeover
		}
	}
	return "", false
}

// streamDeflate is the permessage-deflate state of a stream that
// negotiated it: settings, the inflater, the history of what was sent, and
// counters.
type streamDeflate struct {
	cfg     deflateConfig
	in      inflater
	history []byte // the end of what was sent compressed; writeMu guards it

	bytesIn, wireIn, messagesIn    atomic.Int64
	bytesOut, wireOut, messagesOut atomic.Int64
}

func newStreamDeflate(s *Stream, cfg *deflateConfig) *streamDeflate {
	d := &streamDeflate{cfg: *cfg}
	d.in.src.s = s
	d.in.limit = cfg.maxInflated
	return d
}
