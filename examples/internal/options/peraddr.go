package options

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// DefaultMaxConnsPerAddr is the default of -max-conns-per-addr. One browser
// opens at most 255 WebSockets in all (Chromium; Firefox 200) and a handful
// of HTTP connections per site, so it fits a whole browser, or an office of
// users of one page behind one NAT; and it takes an attacker about 40
// addresses, not one, to fill the 20,000 descriptors of a process.
const DefaultMaxConnsPerAddr = 256

// refusalLogInterval spaces the log lines about connections refused by the
// cap, so that a flood of them cannot fill the disk.
const refusalLogInterval = 10 * time.Second

// LimitPerAddr returns a listener that holds at most max connections at
// once from each client address, and closes the others as soon as they are
// accepted, so that one address cannot take every file descriptor and keep
// clients from other addresses out. An address is an IPv4 address, or an
// IPv6 /64 network, which one host usually holds whole. Connections from
// the exempt networks (trusted reverse proxies, which carry many clients)
// are not counted. A connection counts until it is closed, whoever closes
// it, including after a WebSocket handler hijacked it. A max of 0 or less
// returns ln itself.
//
// Refused connections are logged on log at warn level, at most one line per
// 10 s with their count.
func LimitPerAddr(ln net.Listener, max int, exempt []netip.Prefix, log *slog.Logger) net.Listener {
	if max <= 0 {
		return ln
	}
	return &perAddrListener{Listener: ln, max: max, exempt: exempt, log: log, open: make(map[netip.Prefix]int)}
}

// perAddrListener is the listener LimitPerAddr returns.
type perAddrListener struct {
	net.Listener
	max    int
	exempt []netip.Prefix
	log    *slog.Logger

	mu      sync.Mutex
	open    map[netip.Prefix]int // connections held, by client address
	refused int                  // connections refused since lastLog
	lastLog time.Time
}

// Accept returns the next connection whose address is under the cap.
func (l *perAddrListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, counted := l.key(c.RemoteAddr())
		if !counted {
			return c, nil
		}
		if l.acquire(key) {
			return &countedConn{Conn: c, release: func() { l.release(key) }}, nil
		}
		_ = c.Close()
	}
}

// key returns the address a connection from a counts against, and whether
// it counts at all.
func (l *perAddrListener) key(a net.Addr) (netip.Prefix, bool) {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Prefix{}, false // not IP: a Unix socket, say
	}
	ip := ap.Addr().Unmap().WithZone("")
	for _, p := range l.exempt {
		if p.Contains(ip) {
			return netip.Prefix{}, false
		}
	}
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits) // cannot fail: bits fits ip
	return p, true
}

// acquire counts a new connection from key, unless key is at the cap.
func (l *perAddrListener) acquire(key netip.Prefix) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[key] < l.max {
		l.open[key]++
		return true
	}
	l.refused++
	if now := time.Now(); now.Sub(l.lastLog) >= refusalLogInterval {
		l.log.Warn("connections refused: too many from one client address", "refused", l.refused, "addr", key, "max_conns_per_addr", l.max)
		l.refused, l.lastLog = 0, now
	}
	return false
}

// release uncounts a closed connection from key.
func (l *perAddrListener) release(key netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[key]--; l.open[key] <= 0 {
		delete(l.open, key)
	}
}

// countedConn is a connection counted by a perAddrListener until its first
// Close.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

// Close closes the connection and, the first time, uncounts it.
func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
