package backend_test

import (
	"context"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/mqttws/mqttws/backend"
	"github.com/mqttws/mqttws/internal/loopback"
	"github.com/mqttws/mqttws/internal/testbroker"
)

// serveOneConn listens on a loopback port, serves the first connection
// there with serve, then closes it, and returns the address. done is
// closed when the test ends, before it waits for serve to return.
func serveOneConn(tb testing.TB, serve func(c net.Conn, done <-chan struct{})) string {
	tb.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return serveOneConnOn(tb, ln, serve)
}

// serveOneConnOn is serveOneConn on a listener of the caller's, which it
// closes when the test ends.
func serveOneConnOn(tb testing.TB, ln net.Listener, serve func(c net.Conn, done <-chan struct{})) string {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		serve(c, done)
	}()
	tb.Cleanup(func() {
		close(done)
		_ = ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// bufferedEchoListener is a broker stand-in that echoes with one fixed
// buffer per connection, so that it allocates nothing per read.
func bufferedEchoListener(tb testing.TB) string {
	tb.Helper()
	return serveOneConn(tb, func(c net.Conn, _ <-chan struct{}) {
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if _, err := c.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
}

// relayed starts d relaying the server end of a TCP pair, connects it with
// a CONNECT (so that the CONNECT watch is over), and returns the client end
// and a function that ends the relay and waits for it.
func relayed(tb testing.TB, d *backend.Dialer) (net.Conn, func()) {
	tb.Helper()
	stream, client := loopback.Pair(tb)
	done := make(chan error, 1)
	go func() { done <- d.ServeStream(context.Background(), stream) }()
	connect := testbroker.ConnectPacket(testbroker.ClientID("alloc"), 60)
	if _, err := client.Write(connect); err != nil {
		tb.Fatal(err)
	}
	if _, err := io.ReadFull(client, make([]byte, len(connect))); err != nil {
		tb.Fatal(err)
	}
	return client, func() {
		_ = client.Close()
		if err := <-done; err != nil {
			tb.Errorf("ServeStream returned %v", err)
		}
	}
}

func TestRelayAllocatesNothingPerPacket(t *testing.T) {
	for _, size := range []int{64, 16 << 10} {
		t.Run(byteSize(size), func(t *testing.T) {
			client, stop := relayed(t, backend.Dial(bufferedEchoListener(t)))
			defer stop()
			out, in := make([]byte, size), make([]byte, size)
			roundTrip := func() {
				if _, err := client.Write(out); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(client, in); err != nil {
					t.Fatal(err)
				}
			}
			roundTrip() // fills the buffer pool
			if allocs := testing.AllocsPerRun(200, roundTrip); allocs != 0 {
				t.Errorf("%v allocations per round trip of %d bytes through the relay, want 0", allocs, size)
			}
		})
	}
}

func BenchmarkRelayRoundTrip(b *testing.B) {
	for _, size := range []int{64, 16 << 10} {
		b.Run(byteSize(size), func(b *testing.B) {
			client, stop := relayed(b, backend.Dial(bufferedEchoListener(b)))
			defer stop()
			out, in := make([]byte, size), make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := client.Write(out); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(client, in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func byteSize(n int) string {
	if n >= 1<<10 {
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}
