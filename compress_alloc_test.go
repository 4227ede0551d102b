package mqttws

import (
	"bytes"
	"compress/flate"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mqttws/mqttws/internal/loopback"
)

// poolsRandomized is set under the race detector (compress_race_test.go).
var poolsRandomized bool

// skipUnderRace skips an allocation test where sync.Pool drops items at
// random.
func skipUnderRace(t *testing.T) {
	if poolsRandomized {
		t.Skip("the race detector makes sync.Pool drop items at random")
	}
}

// deflateStream serves the server end of a TCP pair with default settings
// and permessage-deflate negotiated.
func deflateStream(tb testing.TB, opts CompressionOptions, writeFrameSize int) (*Stream, net.Conn) {
	server, client := loopback.Pair(tb)
	_, cancel := context.WithCancel(context.Background())
	cfg := opts.config(writeFrameSize)
	s := newStream(server, server, streamConfig{
		pool:             &bufferPool{size: DefaultReadBufferSize},
		subprotocol:      "mqtt",
		deflate:          &cfg,
		firstDataTimeout: DefaultFirstDataTimeout,
		cancel:           cancel,
		settings:         &streamSettings{writeFrameSize: writeFrameSize, pingInterval: DefaultPingInterval, pongTimeout: DefaultPongTimeout, writeTimeout: DefaultWriteTimeout, closeTimeout: time.Second},
	})
	tb.Cleanup(s.closeConn)
	return s, client
}

// jsonTelemetry returns about n bytes of JSON, as a sensor publishes.
func jsonTelemetry(n int) []byte {
	rng := rand.New(rand.NewPCG(uint64(n), 1))
	var b []byte
	for i := 0; len(b) < n; i++ {
		b = fmt.Appendf(b, `{"device":"sensor-%04d","seq":%d,"temperature":%.3f,"humidity":%.2f,"status":"ok","ts":%d}`+"\n",
			rng.IntN(10000), i, 20+rng.Float64()*5, 40+rng.Float64()*20, 1_700_000_000_000+rng.Int64N(1_000_000))
	}
	return b[:n]
}

// compressedFrame encodes a masked client frame holding p compressed.
func compressedFrame(p []byte) []byte {
	var z bytes.Buffer
	w, _ := flate.NewWriter(&z, flate.BestSpeed)
	_, _ = w.Write(p)
	_ = w.Flush()
	payload := bytes.TrimSuffix(z.Bytes(), syncMarker)
	h := ws.Header{Fin: true, Rsv: rsvCompressed, OpCode: ws.OpBinary, Length: int64(len(payload)), Masked: true, Mask: [4]byte{9, 8, 7, 6}}
	ws.Cipher(payload, h.Mask, 0)
	var b bytes.Buffer
	_ = ws.WriteHeader(&b, h)
	b.Write(payload)
	return b.Bytes()
}

// TestCompressedWritesAllocateNothing proves that compression keeps the
// steady state free of allocations: the compressor and its buffer come
// from pools, whether the message fits one frame, needs several, or does
// not shrink and goes out as it is.
func TestCompressedWritesAllocateNothing(t *testing.T) {
	skipUnderRace(t)
	random := make([]byte, 1000)
	for i := range random {
		random[i] = byte(rand.Uint32())
	}
	cases := []struct {
		name           string
		payload        []byte
		writeFrameSize int
		history        int
	}{
		{"JSON300B", jsonTelemetry(300), 0, 0},
		{"JSON10KiB", jsonTelemetry(10 << 10), 0, 0},
		{"JSON256KiBInSeveralFrames", jsonTelemetry(256 << 10), 0, 0},
		{"JSON10KiBWithWriteFrameSize1000", jsonTelemetry(10 << 10), 1000, 0},
		{"Random1000BGoesOutAsItIs", random, 0, 0},
		// The history is allocated with the first message, then reused.
		{"JSON300BWithHistory", jsonTelemetry(300), 0, 1024},
		{"JSON10KiBWithHistory", jsonTelemetry(10 << 10), 0, 1024},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, client := deflateStream(t, CompressionOptions{History: tc.history}, tc.writeFrameSize)
			go func() { _, _ = io.Copy(io.Discard, client) }()
			allocs := allocsPerRun(100, func() {
				if _, err := s.Write(tc.payload); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per compressed Write of %d bytes, want 0", allocs, len(tc.payload))
			}
		})
	}
}

// TestCompressedReadAllocations measures the allocations of reading
// compressed messages: the stream itself adds none, and the decompressor's
// allocations per message are bounded.
func TestCompressedReadAllocations(t *testing.T) {
	skipUnderRace(t)
	cases := []struct {
		name    string
		payload []byte
		max     float64
	}{
		{"JSON300B", jsonTelemetry(300), 0},
		{"JSON10KiB", jsonTelemetry(10 << 10), 0},
		{"Zeros64KiB", make([]byte, 64<<10), 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, client := deflateStream(t, CompressionOptions{}, 0)
			const runs = 100
			sendFrames(t, client, compressedFrame(tc.payload), 3*(runs+1)) // enough for allocsPerRun's three tries
			buf := make([]byte, len(tc.payload))
			allocs := allocsPerRun(runs, func() {
				if _, err := io.ReadFull(s, buf); err != nil {
					t.Fatal(err)
				}
			})
			if !bytes.Equal(buf, tc.payload) {
				t.Fatal("read bytes differ from those sent")
			}
			t.Logf("%v allocations per compressed message of %d bytes", allocs, len(tc.payload))
			if allocs > tc.max {
				t.Fatalf("%v allocations per compressed message of %d bytes, want at most %v", allocs, len(tc.payload), tc.max)
			}
		})
	}
}

// TestZipBombCostsNoMoreMemoryThanAMessage inflates a message of a
// gigabyte of zeros, sent in about a megabyte, through a stream whose
// MaxInflatedSize is 1 MiB: the stream fails with 1009 after reading about a
// thousandth of it, and the heap grows by no more than a decompressor and
// read buffers, never by the message.
func TestZipBombCostsNoMoreMemoryThanAMessage(t *testing.T) {
	var chunk bytes.Buffer
	w, _ := flate.NewWriter(&chunk, flate.BestCompression)
	_, _ = w.Write(make([]byte, 1<<20))
	_ = w.Flush()
	const repeats = 1 << 10 // 1 GiB inflated
	s, client := deflateStream(t, CompressionOptions{MaxInflatedSize: 1 << 20}, 0)

	// The bomb is streamed, never built whole.
	go func() {
		h := ws.Header{Fin: true, Rsv: rsvCompressed, OpCode: ws.OpBinary, Length: int64(chunk.Len() * repeats), Masked: true, Mask: [4]byte{1, 2, 3, 4}}
		_ = ws.WriteHeader(client, h)
		masked := make([]byte, chunk.Len())
		for i := range repeats {
			copy(masked, chunk.Bytes())
			ws.Cipher(masked, h.Mask, i*chunk.Len())
			if _, err := client.Write(masked); err != nil {
				return
			}
		}
	}()
	go func() { _, _ = io.Copy(io.Discard, client) }()

	buf := make([]byte, 32<<10)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	total := 0
	var err error
	for err == nil {
		var n int
		n, err = s.Read(buf)
		total += n
	}
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	var ce *CloseError
	if !asError(err, &ce) || ce.Code != CloseMessageTooBig {
		t.Fatalf("read ended with %v after %d bytes, want a 1009 CloseError", err, total)
	}
	if total > 1<<20 {
		t.Errorf("read %d bytes, over the limit of %d", total, 1<<20)
	}
	grown := after.TotalAlloc - before.TotalAlloc
	t.Logf("zip bomb: %d bytes read in %v, %d bytes allocated", total, elapsed, grown)
	if grown > 256<<10 {
		t.Errorf("reading the bomb allocated %d bytes: more than a decompressor and buffers", grown)
	}
	if elapsed > time.Second {
		t.Errorf("reading the bomb took %v: inflating went on past the limit", elapsed)
	}
}

func asError(err error, target **CloseError) bool {
	ce, ok := err.(*CloseError)
	if ok {
		*target = ce
	}
	return ok
}

// BenchmarkCompressedWrite measures compressed Writes over loopback TCP, one
// message per operation, and reports the bytes on the wire per message.
func BenchmarkCompressedWrite(b *testing.B) {
	random := make([]byte, 64<<10)
	for i := range random {
		random[i] = byte(rand.Uint32())
	}
	payloads := []struct {
		name string
		p    []byte
	}{
		{"JSON300B", jsonTelemetry(300)},
		{"JSON10KiB", jsonTelemetry(10 << 10)},
		{"Random1KiB", random[:1024]},
		{"Random64KiB", random},
	}
	for _, pl := range payloads {
		for _, on := range []bool{false, true} {
			b.Run(pl.name+"/compress="+strconv.FormatBool(on), func(b *testing.B) {
				var s *Stream
				var client net.Conn
				if on {
					s, client = deflateStream(b, CompressionOptions{}, 0)
				} else {
					s, client = testStream(b)
				}
				counted := make(chan int64, 1)
				go func() {
					n, _ := io.Copy(io.Discard, client)
					counted <- n
				}()
				b.SetBytes(int64(len(pl.p)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := s.Write(pl.p); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				s.closeConn()
				b.ReportMetric(float64(<-counted)/float64(b.N), "wireB/msg")
			})
		}
	}
}

// BenchmarkCompressedRead measures reading compressed messages over
// loopback TCP, one message per operation.
func BenchmarkCompressedRead(b *testing.B) {
	for _, pl := range []struct {
		name string
		p    []byte
	}{
		{"JSON300B", jsonTelemetry(300)},
		{"JSON10KiB", jsonTelemetry(10 << 10)},
	} {
		b.Run(pl.name, func(b *testing.B) {
			s, client := deflateStream(b, CompressionOptions{}, 0)
			benchmarkReads(b, s, client, compressedFrame(pl.p), len(pl.p))
		})
	}
}

// TestLooksRandomTellsIncompressibleData checks the sample that spares
// compress/flate the data that cannot shrink, and only that.
func TestLooksRandomTellsIncompressibleData(t *testing.T) {
	random := make([]byte, 64<<10)
	for i := range random {
		random[i] = byte(rand.Uint32())
	}
	base64 := make([]byte, 4096)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := range base64 {
		base64[i] = alphabet[random[i]&63]
	}
	floats := make([]byte, 0, 4096)
	for i := 0; len(floats) < 4096; i++ {
		floats = fmt.Appendf(floats, "%08x", uint32(20_000+i*7)) // slowly varying binary-ish records
	}
	cases := []struct {
		name string
		p    []byte
		want bool
	}{
		{"Random64KiB", random, true},
		{"Random1KiB", random[:1024], true},
		{"Random200B", random[:200], true},
		{"JSON300B", jsonTelemetry(300), false},
		{"JSON10KiB", jsonTelemetry(10 << 10), false},
		{"Base64", base64, false},
		{"HexRecords", floats, false},
		{"UTF8Text", bytes.Repeat([]byte("温度は二十一度、湿度は四十八パーセントです。"), 20), false},
		{"Zeros", make([]byte, 1000), false},
	}
	for _, tc := range cases {
		if got := looksRandom(tc.p); got != tc.want {
			t.Errorf("%s: looksRandom = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestDeadlineInsideACompressedMessageEndsReading: a decompressor stopped
// half-way cannot resume, so a read deadline that expires inside a
// compressed message is reported once as the timeout it is, and reading is
// then over, with an error that is no timeout (a caller that retries on
// timeouts must not spin).
func TestDeadlineInsideACompressedMessageEndsReading(t *testing.T) {
	s, client := deflateStream(t, CompressionOptions{}, 0)
	frame := compressedFrame(jsonTelemetry(10 << 10))
	if _, err := client.Write(frame[:len(frame)/2]); err != nil {
		t.Fatal(err)
	}
	_ = s.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	buf := make([]byte, 64<<10)
	var err error
	for err == nil {
		_, err = s.Read(buf)
	}
	if !isTimeout(err) {
		t.Fatalf("Read: %v, want the expired deadline", err)
	}
	_ = s.SetReadDeadline(time.Time{})
	if _, err := s.Read(buf); err != errInflateDeadline || isTimeout(err) {
		t.Fatalf("Read after the deadline: %v, want %v", err, errInflateDeadline)
	}
	if s.deflate.in.f != nil {
		t.Error("the decompressor was kept")
	}
}
