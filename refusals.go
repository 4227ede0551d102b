package mqttws

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// How many refusals are logged: at most refusalLogBurst lines per
// refusalLogWindow, so that a flood of bad requests cannot fill a disk; the
// first line after a quiet spell says how many were left out.
const (
	refusalLogBurst  = 20
	refusalLogWindow = 10 * time.Second
)

// refuse answers a refused request with a plain-text error, counts it and
// logs it with its reason: a browser shows the client only the status, so
// the operator's log is where the reason can be read.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, remote net.Addr, refusal *handshakeError) {
	h.countRefusal(refusal.kind)
	if ok, skipped := h.refusalLog.allow(time.Now()); ok {
		attrs := []any{
			"remote", remote.String(),
			"host", r.Host,
			"origin", r.Header.Get("Origin"),
			"status", refusal.status,
			"reason", refusal.reason,
		}
		if skipped > 0 {
			attrs = append(attrs, "refusals_not_logged", skipped)
		}
		h.logger().Info("mqttws: request refused", attrs...)
	}
	for k, v := range refusal.header {
		w.Header()[k] = v
	}
	http.Error(w, refusal.reason, refusal.status)
}

func (h *Handler) countRefusal(kind string) {
	h.mu.Lock()
	h.stats.refused(kind)
	h.mu.Unlock()
}

// rateLimiter lets refusalLogBurst events through per refusalLogWindow and
// counts the others. Its zero value is ready.
type rateLimiter struct {
	mu      sync.Mutex
	start   time.Time // of the current window
	used    int
	skipped int
}

// allow reports whether an event at now may be logged and, when it may, how
// many were refused since the last one allowed.
func (l *rateLimiter) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.start) >= refusalLogWindow {
		l.start, l.used = now, 0
	}
	if l.used >= refusalLogBurst {
		l.skipped++
		return false, 0
	}
	l.used++
	skipped := l.skipped
	l.skipped = 0
	return true, skipped
}

// requestPeer returns the TCP peer of r as a net.Addr.
func requestPeer(r *http.Request) net.Addr {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return net.TCPAddrFromAddrPort(ap)
	}
	return stringAddr(r.RemoteAddr)
}

// stringAddr is a peer address net/http gave in a form other than ip:port
// (a unix socket, a test transport).
type stringAddr string

func (a stringAddr) Network() string { return "unknown" }
func (a stringAddr) String() string  { return string(a) }

// clientKey returns the network MaxConnectionsPerAddr counts a client in:
// its IPv4 address, or its IPv6 /64 (one subscriber's share, which one
// client can hop across at will). Not an IP address: the zero Prefix, which
// is not counted.
func clientKey(a net.Addr) netip.Prefix {
	if _, ok := a.(*net.TCPAddr); !ok {
		return netip.Prefix{}
	}
	ap, _ := addrPort(a)
	ip := ap.Addr()
	bits := ip.BitLen()
	if ip.Is6() {
		bits = 64
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return netip.Prefix{}
	}
	return p
}
