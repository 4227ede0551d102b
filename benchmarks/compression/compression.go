// Package compression measures permessage-deflate (mqttws.Handler's
// Compression) on against off: bytes on the wire, server CPU per message
// and messages per second for JSON telemetry and random payloads, and
// memory per idle connection. The server is a real mqttws.Handler on a
// loopback http.Server; the client speaks raw WebSocket, so that what is
// measured is the server's work. It also sets compress/flate side by side
// with github.com/klauspost/compress/flate on the same payloads, the
// measurement that decides whether mqttws should depend on the latter.
//
//	go test -run TestReport -v ./compression      # the table
//	go test -run '^$' -bench . ./compression     # plain benchmarks
package compression

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/mqttws/mqttws"
)

// Payload is a kind of message body measured.
type Payload struct {
	Name string
	Data []byte // Series[0]
	// Series holds distinct messages of the kind, sent in turn: a
	// compressor with a history (CompressionOptions.History) must not
	// meet the same message again and again, which no sensor sends.
	Series [][]byte
}

// seriesLength is the number of distinct messages of a Payload.
const seriesLength = 64

// Payloads returns the payloads measured: JSON telemetry of about 300 B and
// 10 KiB (what web apps publish), and random bytes of 1 KiB and 64 KiB
// (media, ciphertext: what does not compress).
func Payloads() []Payload {
	kinds := []struct {
		name string
		make func(seed uint64) []byte
	}{
		{"json-300B", func(seed uint64) []byte { return Telemetry(300, seed) }},
		{"json-10KiB", func(seed uint64) []byte { return Telemetry(10<<10, seed) }},
		{"random-1KiB", func(seed uint64) []byte { return Random(1<<10, seed) }},
		{"random-64KiB", func(seed uint64) []byte { return Random(64<<10, seed) }},
	}
	var ps []Payload
	for k, kind := range kinds {
		p := Payload{Name: kind.name}
		for i := range seriesLength {
			p.Series = append(p.Series, kind.make(uint64(k*1000+i+1)))
		}
		p.Data = p.Series[0]
		ps = append(ps, p)
	}
	return ps
}

// Telemetry returns n bytes of JSON lines as a sensor publishes them.
func Telemetry(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	statuses := []string{"ok", "ok", "ok", "warn"}
	var b []byte
	for i := 0; len(b) < n; i++ {
		b = fmt.Appendf(b, `{"device":"sensor-%04d","seq":%d,"ts":%d,"temperature":%.3f,"humidity":%.2f,"battery":%d,"status":%q}`+"\n",
			rng.IntN(10000), i, 1_700_000_000_000+rng.Int64N(1_000_000), 18+rng.Float64()*8, 35+rng.Float64()*30, rng.IntN(101), statuses[rng.IntN(4)])
	}
	return b[:n]
}

// Random returns n random bytes.
func Random(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// Server is an mqttws.Handler on a loopback http.Server whose backend hands
// each stream to the caller.
type Server struct {
	Handler *mqttws.Handler
	Addr    string
	streams chan net.Conn
	srv     *http.Server
}

// StartServer serves a Handler with compression on (the default options) or
// off.
func StartServer(compress bool) (*Server, error) {
	if compress {
		return StartServerWith(&mqttws.CompressionOptions{})
	}
	return StartServerWith(nil)
}

// StartServerWith serves a Handler with the given compression options (nil:
// off).
func StartServerWith(opts *mqttws.CompressionOptions) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{Addr: ln.Addr().String(), streams: make(chan net.Conn, 16)}
	s.Handler = &mqttws.Handler{
		Backend: mqttws.BackendFunc(func(ctx context.Context, c net.Conn) error {
			s.streams <- c
			<-ctx.Done()
			return nil
		}),
		PingInterval:     -1,
		FirstDataTimeout: -1,
		CloseTimeout:     100 * time.Millisecond,
		Logger:           slog.New(slog.DiscardHandler),
	}
	s.Handler.Compression = opts
	s.srv = &http.Server{Handler: s.Handler}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Close stops the server.
func (s *Server) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.Handler.Shutdown(ctx)
	_ = s.srv.Close()
}

// Dial opens a raw WebSocket to s, offering permessage-deflate when offer
// is set, and returns the client connection (with any bytes read past the
// handshake) and the server's stream.
func (s *Server) Dial(offer bool) (net.Conn, net.Conn, error) {
	c, err := net.Dial("tcp", s.Addr)
	if err != nil {
		return nil, nil, err
	}
	req := "GET /mqtt HTTP/1.1\r\nHost: " + s.Addr + "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: mqtt\r\n"
	if offer {
		req += "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		_ = c.Close()
		return nil, nil, err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		_ = c.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || (offer && !strings.Contains(resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate")) {
		_ = c.Close()
		return nil, nil, fmt.Errorf("handshake answered %s, extensions %q", resp.Status, resp.Header.Get("Sec-WebSocket-Extensions"))
	}
	select {
	case stream := <-s.streams:
		if br.Buffered() > 0 {
			return nil, nil, errors.New("the server sent bytes after its 101")
		}
		return c, stream, nil
	case <-time.After(5 * time.Second):
		_ = c.Close()
		return nil, nil, errors.New("no stream within 5s")
	}
}

// Result is one direction of one payload, compression on or off.
type Result struct {
	Msgs       int
	Elapsed    time.Duration
	CPU        time.Duration // process CPU time, server and client together
	WireBytes  int64         // frame bytes on the wire, headers included
	Compressed uint64        // messages that traveled compressed
}

// PerSecond returns messages per second.
func (r Result) PerSecond() float64 { return float64(r.Msgs) / r.Elapsed.Seconds() }

// CPUPerMsg returns the process CPU time per message.
func (r Result) CPUPerMsg() time.Duration { return r.CPU / time.Duration(r.Msgs) }

// WirePerMsg returns the bytes on the wire per message.
func (r Result) WirePerMsg() float64 { return float64(r.WireBytes) / float64(r.Msgs) }

// countingConn counts the bytes read from a connection.
type countingConn struct {
	net.Conn
	n atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// MeasureWrites has the server Write p msgs times to a client that reads
// and drops the frames, and measures the server side.
func MeasureWrites(compress bool, p []byte, msgs int) (Result, error) {
	var opts *mqttws.CompressionOptions
	if compress {
		opts = &mqttws.CompressionOptions{}
	}
	return MeasureWriteSeries(opts, [][]byte{p}, msgs)
}

// MeasureWriteSeries has the server Write msgs messages, the series in
// turn, with the given compression options (nil: off) to a client that
// reads and drops the frames, and measures the server side.
func MeasureWriteSeries(opts *mqttws.CompressionOptions, series [][]byte, msgs int) (Result, error) {
	srv, err := StartServerWith(opts)
	if err != nil {
		return Result{}, err
	}
	defer srv.Close()
	c, stream, err := srv.Dial(opts != nil)
	if err != nil {
		return Result{}, err
	}
	defer c.Close()
	cc := &countingConn{Conn: c}
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		_, _ = io.Copy(io.Discard, cc)
	}()
	runtime.GC()
	cpu0 := cpuTime()
	start := time.Now()
	for i := range msgs {
		if _, err := stream.Write(series[i%len(series)]); err != nil {
			return Result{}, err
		}
	}
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	_ = stream.Close()
	<-drained
	return Result{Msgs: msgs, Elapsed: elapsed, CPU: cpu, WireBytes: cc.n.Load(), Compressed: srv.Handler.Stats().CompressedMessagesOut}, nil
}

// MeasureReads has a client send p msgs times, compressed when compress is
// set (as ws in Node or a browser would: compress/flate at level 1, no
// context takeover), and the server Read it all.
func MeasureReads(compress bool, p []byte, msgs int) (Result, error) {
	return MeasureReadSeries(compress, [][]byte{p}, msgs)
}

// MeasureReadSeries is MeasureReads with the messages of the series in
// turn.
func MeasureReadSeries(compress bool, series [][]byte, msgs int) (Result, error) {
	srv, err := StartServer(compress)
	if err != nil {
		return Result{}, err
	}
	defer srv.Close()
	c, stream, err := srv.Dial(compress)
	if err != nil {
		return Result{}, err
	}
	defer c.Close()
	// Frames are batched so that the client writes in large chunks: the
	// server's reading is what is measured. A batch holds the series at
	// least once.
	var frames [][]byte
	var batch []byte
	for i := 0; i < len(series) || len(batch) < 64<<10; i++ {
		f := clientFrame(series[i%len(series)], compress)
		frames = append(frames, f)
		batch = append(batch, f...)
	}
	var want, wire int64
	for i := range msgs {
		want += int64(len(series[i%len(frames)%len(series)]))
		wire += int64(len(frames[i%len(frames)]))
	}
	go func() {
		for sent := 0; sent < msgs; {
			// Whole batches, then the frames left.
			n, end := len(frames), len(batch)
			if left := msgs - sent; left < n {
				n, end = left, 0
				for _, f := range frames[:left] {
					end += len(f)
				}
			}
			if _, err := c.Write(batch[:end]); err != nil {
				return
			}
			sent += n
		}
	}()
	buf := make([]byte, 64<<10)
	runtime.GC()
	cpu0 := cpuTime()
	start := time.Now()
	var got int64
	for got < want {
		n, err := stream.Read(buf)
		got += int64(n)
		if err != nil {
			return Result{}, err
		}
	}
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	return Result{Msgs: msgs, Elapsed: elapsed, CPU: cpu, WireBytes: wire, Compressed: srv.Handler.Stats().CompressedMessagesIn}, nil
}

// clientFrame encodes p as one masked client frame, compressed or not.
func clientFrame(p []byte, compress bool) []byte {
	h := ws.Header{Fin: true, OpCode: ws.OpBinary, Masked: true, Mask: [4]byte{1, 2, 3, 4}}
	payload := bytes.Clone(p)
	if compress {
		var z bytes.Buffer
		w, _ := flate.NewWriter(&z, flate.BestSpeed)
		_, _ = w.Write(p)
		_ = w.Flush()
		payload = bytes.TrimSuffix(z.Bytes(), []byte{0, 0, 0xff, 0xff})
		h.Rsv = ws.Rsv(true, false, false)
	}
	h.Length = int64(len(payload))
	ws.Cipher(payload, h.Mask, 0)
	var b bytes.Buffer
	_ = ws.WriteHeader(&b, h)
	b.Write(payload)
	return b.Bytes()
}

// IdleMemory opens n connections that sent nothing after the handshake
// (their backend blocked in Read, as a broker waits for CONNECT) and
// returns the Go heap and stack they hold, per connection, after a GC that
// returns free memory to the system. The raw clients cost the same whether
// compression is on or off.
func IdleMemory(compress bool, n int) (float64, error) {
	srv, err := StartServer(compress)
	if err != nil {
		return 0, err
	}
	defer srv.Close()
	// The backend above only holds the stream; an idle broker reads.
	srv.Handler.Backend = mqttws.BackendFunc(func(ctx context.Context, c net.Conn) error {
		srv.streams <- c
		var b [1]byte
		_, _ = c.Read(b[:])
		return nil
	})
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	warm := func(k int) error {
		for range k {
			c, _, err := srv.Dial(compress)
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	}
	if err := warm(64); err != nil {
		return 0, err
	}
	before := settledMemory()
	if err := warm(n); err != nil {
		return 0, err
	}
	after := settledMemory()
	return float64(after-before) / float64(n), nil
}

// settledMemory returns the heap in use and the goroutine stacks after a
// GC.
func settledMemory() uint64 {
	time.Sleep(200 * time.Millisecond)
	runtime.GC()
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}
