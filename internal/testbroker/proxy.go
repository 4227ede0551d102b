package testbroker

import (
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy is a TCP proxy on loopback in front of a server (a broker node)
// that a test can black-hole, as a network that stops carrying packets.
type Proxy struct {
	// Addr is where it listens, "127.0.0.1:port", black-holed or not.
	Addr string

	target string
	port   int
	wg     sync.WaitGroup

	mu      sync.Mutex
	cond    sync.Cond
	holed   bool
	closed  bool
	ln      net.Listener
	dropper *synDropper
	pairs   map[*proxyPair]struct{}
}

// proxyPair is a connection through the proxy: the client's and the
// target's ends.
type proxyPair struct {
	client, target net.Conn
	closed         bool // under Proxy.mu
}

// StartProxy starts a proxy to target, stopped when the test ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{
		Addr:   ln.Addr().String(),
		target: target,
		port:   ln.Addr().(*net.TCPAddr).Port,
		pairs:  make(map[*proxyPair]struct{}),
	}
	p.cond.L = &p.mu
	p.serve(ln)
	t.Cleanup(p.close)
	return p
}

// BlackHole stops the proxy carrying anything: bytes already in its
// connections are held, not forwarded, and new connections are never
// established (their SYNs are dropped, so dials time out).
func (p *Proxy) BlackHole(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.holed {
		return
	}
	p.holed = true
	_ = p.ln.Close()
	var err error
	for range 50 { // the closed listener's port is free at once, or nearly
		if p.dropper, err = dropSYNs(p.port); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("black-hole proxy %s: %v", p.Addr, err)
}

// Restore ends the black hole: the connections it held are reset, as
// their ends gave up on each other meanwhile, and new ones are carried.
func (p *Proxy) Restore(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.holed {
		return
	}
	_ = p.dropper.Close()
	p.dropper = nil
	for pair := range p.pairs {
		p.closePair(pair)
	}
	p.holed = false
	p.cond.Broadcast()
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp4", p.Addr); err == nil {
			p.serve(ln)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("restore proxy %s: %v", p.Addr, err)
}

// serve accepts connections on ln until it is closed. Call with p.mu held
// or before p is shared.
func (p *Proxy) serve(ln net.Listener) {
	p.ln = ln
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.carry(c)
			}()
		}
	}()
}

// carry connects c to the target and copies both ways.
func (p *Proxy) carry(c net.Conn) {
	u, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		_ = c.(*net.TCPConn).SetLinger(0)
		_ = c.Close()
		return
	}
	pair := &proxyPair{client: c, target: u}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = c.Close()
		_ = u.Close()
		return
	}
	p.pairs[pair] = struct{}{}
	p.mu.Unlock()
	done := make(chan struct{})
	go func() {
		p.pump(pair, c, u)
		close(done)
	}()
	p.pump(pair, u, c)
	<-done
	p.mu.Lock()
	p.closePair(pair)
	delete(p.pairs, pair)
	p.mu.Unlock()
}

// pump copies src to dst, holding what it read while the proxy is
// black-holed; it closes the pair when either end fails.
func (p *Proxy) pump(pair *proxyPair, dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.holed && !pair.closed {
				p.cond.Wait()
			}
			closed := pair.closed
			p.mu.Unlock()
			if closed {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			p.mu.Lock()
			// Held while black-holed: an end's close is news that would not
			// get through either.
			for p.holed && !pair.closed {
				p.cond.Wait()
			}
			p.closePair(pair)
			p.mu.Unlock()
			return
		}
	}
}

// closePair resets both ends of pair. Call with p.mu held.
func (p *Proxy) closePair(pair *proxyPair) {
	if pair.closed {
		return
	}
	pair.closed = true
	for _, c := range []net.Conn{pair.client, pair.target} {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
	}
	p.cond.Broadcast()
}

// close stops the proxy and resets its connections.
func (p *Proxy) close() {
	p.mu.Lock()
	p.closed = true
	_ = p.ln.Close()
	if p.dropper != nil {
		_ = p.dropper.Close()
	}
	for pair := range p.pairs {
		p.closePair(pair)
	}
	p.holed = false
	p.cond.Broadcast()
	p.mu.Unlock()
	p.wg.Wait()
}
