package mqttws

import (
	"context"
	"net/http"
	"net/netip"
)

// admit reserves a connection slot for a client (counted in the network
// key; the zero Prefix is not counted) before the upgrade. It refuses while
// shutting down, at MaxConnections, and at MaxConnectionsPerAddr.
func (h *Handler) admit(key netip.Prefix) *handshakeError {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.shuttingDown:
		return refuseAs("shutting_down", http.StatusServiceUnavailable, "server shutting down")
	case h.MaxConnections > 0 && len(h.streams)+h.admitting >= h.MaxConnections:
		e := refuseAs("max_connections", http.StatusServiceUnavailable, "too many connections (the limit is %d): try again later", h.MaxConnections)
		e.header = http.Header{"Retry-After": {retryAfterSeconds}}
		return e
	case h.MaxConnectionsPerAddr > 0 && key.IsValid() && h.perAddr[key] >= h.MaxConnectionsPerAddr:
		e := refuseAs("max_connections_per_addr", http.StatusTooManyRequests, "too many connections from %s (the limit is %d per client address): try again later", key, h.MaxConnectionsPerAddr)
		e.header = http.Header{"Retry-After": {retryAfterSeconds}}
		return e
	}
	h.admitting++
	if h.MaxConnectionsPerAddr > 0 && key.IsValid() {
		if h.perAddr == nil {
			h.perAddr = make(map[netip.Prefix]int)
		}
		h.perAddr[key]++
	}
	return nil
}

// unadmit gives back a slot whose upgrade failed.
func (h *Handler) unadmit(key netip.Prefix) {
	h.mu.Lock()
	h.admitting--
	h.releaseAddrLocked(key)
	h.mu.Unlock()
}

// releaseAddrLocked uncounts a connection of a client network.
func (h *Handler) releaseAddrLocked(key netip.Prefix) {
	if n, ok := h.perAddr[key]; ok {
		if n <= 1 {
			delete(h.perAddr, key)
		} else {
			h.perAddr[key] = n - 1
		}
	}
}

// track turns an admitted request's slot into a served stream; it fails
// once Shutdown has begun.
func (h *Handler) track(s *Stream) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.admitting--
	if h.shuttingDown {
		h.releaseAddrLocked(s.addrKey())
		return false
	}
	if h.streams == nil {
		h.streams = make(map[*Stream]struct{})
	}
	h.streams[s] = struct{}{}
	h.active.Add(1)
	h.stats.accepted++
	if s.deflate != nil {
		h.stats.compressed++
	}
	return true
}

func (h *Handler) untrack(s *Stream) {
	h.mu.Lock()
	delete(h.streams, s)
	h.releaseAddrLocked(s.addrKey())
	h.stats.add(s)
	h.mu.Unlock()
	h.active.Done()
}

// Shutdown stops the handler gracefully: new upgrades are refused with 503,
// every connection is closed with CloseGoingAway (1001), which ends its
// backend, and Shutdown waits for the backends to return. When ctx ends
// first, it closes the remaining TCP connections at once and returns
// ctx.Err().
//
// http.Server.Shutdown does not touch hijacked connections: call this from
// http.Server.RegisterOnShutdown, or after Shutdown of the server.
func (h *Handler) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.shuttingDown = true
	streams := make([]*Stream, 0, len(h.streams))
	for s := range h.streams {
		streams = append(streams, s)
	}
	h.mu.Unlock()

	for _, s := range streams {
		// In parallel: a close frame may wait for a write stuck on a client
		// that reads nothing, up to CloseTimeout.
		go func() { _ = s.CloseWith(CloseGoingAway, "server shutting down") }()
	}
	done := make(chan struct{})
	go func() {
		h.active.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		for _, s := range streams {
			s.closeConn()
		}
		return ctx.Err()
	}
}
