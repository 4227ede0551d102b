package options_test

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/mqttws/mqttws/examples/internal/exampletest"
	"github.com/mqttws/mqttws/examples/internal/options"
)

// fakeConn is a connection from a given address that records its closes.
type fakeConn struct {
	net.Conn
	remote net.Addr
	closes int
}

func (c *fakeConn) RemoteAddr() net.Addr { return c.remote }
func (c *fakeConn) Close() error         { c.closes++; return nil }

// fakeListener accepts the given connections in order, then fails with
// net.ErrClosed.
type fakeListener struct {
	net.Listener
	conns []*fakeConn
}

func (l *fakeListener) Accept() (net.Conn, error) {
	if len(l.conns) == 0 {
		return nil, net.ErrClosed
	}
	c := l.conns[0]
	l.conns = l.conns[1:]
	return c, nil
}

func TestLimitPerAddrCountsAddressesAndIPv6Networks(t *testing.T) {
	tests := []struct {
		name     string
		max      int
		exempt   []netip.Prefix
		from     []string
		accepted []bool
	}{
		{
			name:     "IPv4 addresses count apart",
			max:      2,
			from:     []string{"192.0.2.1:1", "192.0.2.1:2", "192.0.2.1:3", "192.0.2.2:1"},
			accepted: []bool{true, true, false, true},
		},
		{
			name:     "an IPv6 /64 is one client",
			max:      1,
			from:     []string{"[2001:db8::1]:1", "[2001:db8::ffff:2]:1", "[2001:db8:0:1::1]:1"},
			accepted: []bool{true, false, true},
		},
		{
			name:     "an IPv4-mapped IPv6 address is its IPv4 address",
			max:      1,
			from:     []string{"192.0.2.1:1", "[::ffff:192.0.2.1]:2"},
			accepted: []bool{true, false},
		},
		{
			name:     "trusted proxies are not counted",
			max:      1,
			exempt:   []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			from:     []string{"10.0.0.1:1", "10.0.0.1:2", "10.0.0.1:3", "192.0.2.1:1", "192.0.2.1:2"},
			accepted: []bool{true, true, true, true, false},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeListener{}
			for _, a := range tc.from {
				fake.conns = append(fake.conns, &fakeConn{remote: net.TCPAddrFromAddrPort(netip.MustParseAddrPort(a))})
			}
			conns := append([]*fakeConn(nil), fake.conns...)
			ln := options.LimitPerAddr(fake, tc.max, tc.exempt, slog.New(slog.DiscardHandler))
			var got []net.Conn
			for {
				c, err := ln.Accept()
				if err != nil {
					break
				}
				got = append(got, c)
			}
			n := 0
			for i, c := range conns {
				if refused := c.closes == 1; refused == tc.accepted[i] {
					t.Errorf("connection %d from %s: accepted %v, want %v", i, tc.from[i], !refused, tc.accepted[i])
				}
				if tc.accepted[i] {
					n++
				}
			}
			if len(got) != n {
				t.Errorf("Accept returned %d connections, want %d", len(got), n)
			}
		})
	}
}

// acceptor accepts connections on ln, greets each with "ok\n", and closes
// it once its client has closed it. closeTwice closes each twice.
func acceptor(t *testing.T, ln net.Listener, closeTwice bool) {
	t.Helper()
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				_, _ = io.WriteString(c, "ok\n")
				_, _ = io.Copy(io.Discard, c)
				_ = c.Close()
				if closeTwice {
					_ = c.Close()
				}
			})
		}
	})
}

// greeted dials addr from the loopback address from, and reports whether
// the server greeted the connection (accepted) rather than closing it
// (refused). The connection stays open when greeted, until the test ends.
func greeted(t *testing.T, from, addr string) (net.Conn, bool) {
	t.Helper()
	c := exampletest.Dial(t, from, addr)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection from %s neither greeted nor closed within 5s", from)
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, err == nil && line == "ok\n"
}

func TestLimitPerAddrKeepsAnotherAddressIn(t *testing.T) {
	const max, opened = 20, 100
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := options.LimitPerAddr(tcp, max, nil, slog.New(slog.DiscardHandler))
	acceptor(t, ln, false)
	addr := tcp.Addr().String()

	var held []net.Conn
	for range opened {
		if c, ok := greeted(t, "127.0.0.2", addr); ok {
			held = append(held, c)
		}
	}
	if len(held) != max {
		t.Fatalf("127.0.0.2 opened %d connections, and %d were accepted, want %d", opened, len(held), max)
	}
	if _, ok := greeted(t, "127.0.0.3", addr); !ok {
		t.Fatalf("127.0.0.3 was refused while 127.0.0.2 held %d connections", max)
	}

	// Closed connections leave room for as many new ones, no more.
	const freed = 5
	for _, c := range held[:freed] {
		_ = c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	accepted := 0
	for accepted < freed && time.Now().Before(deadline) {
		if _, ok := greeted(t, "127.0.0.2", addr); ok {
			accepted++
		} else {
			time.Sleep(10 * time.Millisecond) // the server has not seen a close yet
		}
	}
	if accepted != freed {
		t.Fatalf("after %d connections closed, %d new ones were accepted within 5s, want %d", freed, accepted, freed)
	}
	if _, ok := greeted(t, "127.0.0.2", addr); ok {
		t.Fatalf("127.0.0.2 got a connection over the cap of %d after closing some", max)
	}
}

func TestLimitPerAddrUncountsAConnectionClosedTwiceOnce(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := options.LimitPerAddr(tcp, 2, nil, slog.New(slog.DiscardHandler))
	acceptor(t, ln, true)
	addr := tcp.Addr().String()

	first, ok := greeted(t, "127.0.0.2", addr)
	if !ok {
		t.Fatal("the first connection was refused")
	}
	if _, ok := greeted(t, "127.0.0.2", addr); !ok {
		t.Fatal("the second connection was refused")
	}
	_ = first.Close()
	// Once the server closed the first (twice), one connection fits again
	// beside the second, not two.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := greeted(t, "127.0.0.2", addr); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no connection accepted within 5s of the first one's close")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, ok := greeted(t, "127.0.0.2", addr); ok {
		t.Fatal("three connections held with a cap of 2: closing one twice uncounted it twice")
	}
}
