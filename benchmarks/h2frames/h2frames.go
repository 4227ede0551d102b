// Package h2frames measures mqttws frame I/O over TLS, on HTTP/1.1 (one
// upgraded connection per stream) and on HTTP/2 (RFC 8441 streams of one
// connection), with one stream and with 100 streams at once:
//
//	go test -run '^$' -bench . -benchmem ./h2frames
//
// The server side is a real mqttws.Handler on a real http.Server serving
// TLS; the test binary runs with GODEBUG=http2xconnect=1 (TestMain sets it).
// Each operation is one frame of the given size written by the server
// (Write) or read by it (Read); with 100 streams, the frames are spread over
// the streams and written or read concurrently.
package h2frames

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/interop/h2ws"
)

// Sizes are the payload sizes measured.
var Sizes = []int{128, 1 << 10, 16 << 10, 64 << 10}

// Protocols are the HTTP versions measured.
var Protocols = []string{"h1", "h2"}

// server is an mqttws handler over TLS whose backend hands each stream to
// the benchmark.
type server struct {
	url     string
	tls     *tls.Config
	streams chan net.Conn
	h       *mqttws.Handler
	srv     *httptest.Server
}

func startServer() *server {
	s := &server{streams: make(chan net.Conn, 128)}
	s.h = &mqttws.Handler{
		Backend: mqttws.BackendFunc(func(ctx context.Context, c net.Conn) error {
			s.streams <- c
			<-ctx.Done()
			return nil
		}),
		PingInterval: -1,
		CloseTimeout: time.Second,
		Logger:       slog.New(slog.DiscardHandler),
	}
	s.srv = httptest.NewUnstartedServer(s.h)
	s.srv.EnableHTTP2 = true
	s.srv.StartTLS()
	s.url = s.srv.URL + "/mqtt"
	s.tls = s.srv.Client().Transport.(*http.Transport).TLSClientConfig
	return s
}

func (s *server) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.h.Shutdown(ctx)
	s.srv.Close()
}

// pair is one stream: the server's end and the client's.
type pair struct {
	server net.Conn
	client io.ReadWriter
	closer io.Closer
}

// open opens n streams to s with protocol proto ("h1": one TLS connection
// each; "h2": all on one HTTP/2 connection).
func open(s *server, proto string, n int) ([]pair, func(), error) {
	var pairs []pair
	var closers []io.Closer
	cleanup := func() {
		for _, c := range closers {
			_ = c.Close()
		}
	}
	host := strings.TrimPrefix(s.srv.URL, "https://")
	var h2c *h2ws.Client
	if proto == "h2" {
		c, err := h2ws.Dial(host, s.tls)
		if err != nil {
			return nil, cleanup, err
		}
		h2c = c
		closers = append(closers, c)
	}
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var p pair
		switch proto {
		case "h2":
			c, resp, err := h2c.Open(ctx, s.url, []string{"mqtt"}, nil)
			if err == nil && c == nil {
				err = fmt.Errorf("extended CONNECT answered %d", resp.StatusCode)
			}
			if err != nil {
				cancel()
				return nil, cleanup, err
			}
			p.client = struct {
				io.Reader
				io.Writer
			}{c.RawBody(), writerFunc(c.WriteRaw)}
			p.closer = c
		default:
			d := ws.Dialer{Protocols: []string{"mqtt"}, TLSConfig: s.tls}
			conn, br, _, err := d.Dial(ctx, "wss"+strings.TrimPrefix(s.url, "https"))
			if err != nil {
				cancel()
				return nil, cleanup, err
			}
			var r io.Reader = conn
			if br != nil {
				r = io.MultiReader(br, conn)
			}
			p.client = struct {
				io.Reader
				io.Writer
			}{r, conn}
			p.closer = conn
		}
		cancel()
		closers = append(closers, p.closer)
		select {
		case p.server = <-s.streams:
		case <-time.After(10 * time.Second):
			return nil, cleanup, errors.New("no stream reached the backend")
		}
		pairs = append(pairs, p)
	}
	return pairs, cleanup, nil
}

// writerFunc adapts a function that writes bytes whole to an io.Writer.
type writerFunc func([]byte) error

func (f writerFunc) Write(p []byte) (int, error) {
	if err := f(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// maskedFrame is a binary client frame of payload p.
func maskedFrame(p []byte) []byte {
	h := ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(len(p)), Masked: true, Mask: [4]byte{1, 2, 3, 4}}
	var b bytes.Buffer
	_ = ws.WriteHeader(&b, h)
	masked := bytes.Clone(p)
	ws.Cipher(masked, h.Mask, 0)
	b.Write(masked)
	return b.Bytes()
}

// Write returns a benchmark of the server writing frames of size bytes on
// streams streams of protocol proto, while the clients read and drop them.
func Write(proto string, streams, size int) func(*testing.B) {
	return func(b *testing.B) {
		s := startServer()
		defer s.close()
		pairs, cleanup, err := open(s, proto, streams)
		defer cleanup()
		if err != nil {
			b.Fatal(err)
		}
		for _, p := range pairs {
			go func() { _, _ = io.Copy(io.Discard, p.client) }()
		}
		data := bytes.Repeat([]byte{0xa5}, size)
		b.SetBytes(int64(size))
		b.ReportAllocs()
		b.ResetTimer()
		run(b, pairs, false, func(p pair) error {
			_, err := p.server.Write(data)
			return err
		})
	}
}

// Read returns a benchmark of the server reading frames of size bytes on
// streams streams of protocol proto, while the clients write them as fast
// as the connection takes them.
func Read(proto string, streams, size int) func(*testing.B) {
	return func(b *testing.B) {
		s := startServer()
		defer s.close()
		pairs, cleanup, err := open(s, proto, streams)
		defer cleanup()
		if err != nil {
			b.Fatal(err)
		}
		chunk := bytes.Repeat(maskedFrame(bytes.Repeat([]byte{0x5a}, size)), max(1, (64<<10)/(size+14)))
		for _, p := range pairs {
			go func() {
				for {
					if _, err := p.client.Write(chunk); err != nil {
						return
					}
				}
			}()
		}
		b.SetBytes(int64(size))
		b.ReportAllocs()
		b.ResetTimer()
		bufs := make(map[net.Conn][]byte, len(pairs))
		for _, p := range pairs {
			bufs[p.server] = make([]byte, size)
		}
		run(b, pairs, true, func(p pair) error {
			_, err := io.ReadFull(p.server, bufs[p.server])
			return err
		})
	}
}

// run does b.N operations spread over the pairs, one goroutine per pair.
// With keepGoing, a pair that has done its share goes on (uncounted) until
// all are done: a stream of an HTTP/2 connection that stops reading holds
// the connection's flow-control window and would starve the others.
func run(b *testing.B, pairs []pair, keepGoing bool, op func(pair) error) {
	var quota, all sync.WaitGroup
	var mu sync.Mutex
	var first error
	stop := make(chan struct{})
	fail := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
	}
	per, extra := b.N/len(pairs), b.N%len(pairs)
	for i, p := range pairs {
		n := per
		if i < extra {
			n++
		}
		quota.Add(1)
		all.Go(func() {
			counted := true
			defer func() {
				if counted {
					quota.Done()
				}
			}()
			for range n {
				if err := op(p); err != nil {
					fail(err)
					return
				}
			}
			counted = false
			quota.Done()
			for keepGoing {
				select {
				case <-stop:
					return
				default:
				}
				if op(p) != nil {
					return
				}
			}
		})
	}
	quota.Wait()
	b.StopTimer()
	close(stop)
	if !keepGoing {
		all.Wait()
	}
	// Readers that go on may wait for a frame that a client stuck on flow
	// control never sends: closing the streams ends them.
	mu.Lock()
	defer mu.Unlock()
	if first != nil {
		b.Fatal(first)
	}
}
