package mqttws_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"strings"
	"testing"

	"github.com/mqttws/mqttws"
)

// acceptDeflateWithHistory is the answer of a handler with History set to
// an offer that lets the server keep its context.
const acceptDeflateWithHistory = "permessage-deflate;client_no_context_takeover"

// TestCompressionHistoryNegotiation checks that a handler with History
// keeps its context (no server_no_context_takeover in its answer) unless
// the client's offer asks it not to.
func TestCompressionHistoryNegotiation(t *testing.T) {
	t.Parallel()
	url := serve(t, deflateHandler(mqttws.BackendFunc(echo), mqttws.CompressionOptions{History: 1024}))
	cases := []struct {
		name   string
		offers []string
		want   string
	}{
		{
			name:   "PlainOfferGetsContextTakeover",
			offers: []string{"permessage-deflate"},
			want:   acceptDeflateWithHistory,
		},
		{
			name:   "ChromiumAndNodeOfferGetsContextTakeover",
			offers: []string{"permessage-deflate; client_max_window_bits"},
			want:   acceptDeflateWithHistory,
		},
		{
			name:   "OfferRefusingServerTakeoverIsHonored",
			offers: []string{"permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
			want:   acceptDeflate,
		},
		{
			name:   "FullServerWindowIsEchoed",
			offers: []string{"permessage-deflate; server_max_window_bits=15"},
			want:   acceptDeflateWithHistory + ";server_max_window_bits=15",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, got := dialOffering(t, url, tc.offers...)
			if got != tc.want {
				t.Fatalf("Sec-WebSocket-Extensions %q, want %q", got, tc.want)
			}
		})
	}
}

// historyWrites is a sequence of Writes that exercises the history: small
// JSON messages that repeat each other's keys, one larger than the history,
// one larger than a frame, and between them messages that go out
// uncompressed (under the threshold, random), which a receiver's window
// never sees.
func historyWrites(rng *rand.Rand) [][]byte {
	var writes [][]byte
	for i := range 40 {
		writes = append(writes, telemetry(200+rng.IntN(300), rng))
		switch i {
		case 10:
			writes = append(writes, []byte("tiny"))
		case 20:
			writes = append(writes, randomBytes(2000, rng))
		case 25:
			writes = append(writes, telemetry(5000, rng))
		case 30:
			writes = append(writes, telemetry(40<<10, rng))
		}
	}
	return writes
}

// TestCompressionHistoryIsByteExact sends messages compressed with a
// history to a client that inflates them with context takeover, as browsers
// and Node's ws do (compress/flate with a dictionary here: another
// implementation than the server's), and checks every byte; with a
// History of 1 KiB, small JSON messages take far fewer bytes than without.
func TestCompressionHistoryIsByteExact(t *testing.T) {
	t.Parallel()
	writes := historyWrites(rand.New(rand.NewPCG(7, 8)))
	wire := map[int]int{}
	for _, history := range []int{0, 1024, mqttws.MaxCompressionHistory} {
		backend := mqttws.BackendFunc(func(ctx context.Context, c net.Conn) error {
			for _, w := range writes {
				if _, err := c.Write(w); err != nil {
					return err
				}
			}
			<-ctx.Done()
			return nil
		})
		h := deflateHandler(backend, mqttws.CompressionOptions{History: history})
		h.WriteFrameSize = 8 << 10
		c, ext := dialOffering(t, serve(t, h), "permessage-deflate; client_max_window_bits")
		if takeover := !strings.Contains(ext, "server_no_context_takeover"); takeover != (history > 0) {
			t.Fatalf("History %d: answer %q", history, ext)
		}
		window := []byte{}
		c.window = &window
		for i, w := range writes {
			m := c.readMessage()
			if !bytes.Equal(m.data, w) {
				t.Fatalf("History %d, message %d: %d bytes differ from the %d written", history, i, len(m.data), len(w))
			}
			if len(w) < 1000 && len(w) >= 128 {
				wire[history] += len(m.wire)
			}
		}
	}
	t.Logf("small JSON messages on the wire: %v bytes by History", wire)
	if wire[1024]*3 > wire[0]*2 {
		t.Errorf("small JSON messages took %d bytes with History 1024, %d without: want at least a third less", wire[1024], wire[0])
	}
}
