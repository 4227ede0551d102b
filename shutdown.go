package mqttws

import (
	"context"
	"net/http"
)

// admit reserves a connection slot before the upgrade; it fails while
// shutting down or at MaxConnections.
func (h *Handler) admit() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.shuttingDown {
		return false
	}
	if h.MaxConnections > 0 && len(h.streams)+h.admitting >= h.MaxConnections {
		return false
	}
	h.admitting++
	return true
}

// unadmit gives back a slot whose upgrade failed.
func (h *Handler) unadmit() {
	h.mu.Lock()
	h.admitting--
	h.mu.Unlock()
}

// loadRefusal says why admit failed.
func (h *Handler) loadRefusal() *handshakeError {
	if h.isShuttingDown() {
		return refuseAs("shutting_down", http.StatusServiceUnavailable, "server shutting down")
	}
	e := refuseAs("max_connections", http.StatusServiceUnavailable, "too many connections (the limit is %d): try again later", h.MaxConnections)
	e.header = http.Header{"Retry-After": {retryAfterSeconds}}
	return e
}

// track turns an admitted request's slot into a served stream; it fails
// once Shutdown has begun.
func (h *Handler) track(s *Stream) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.admitting--
	if h.shuttingDown {
		return false
	}
	if h.streams == nil {
		h.streams = make(map[*Stream]struct{})
	}
	h.streams[s] = struct{}{}
	h.active.Add(1)
	h.stats.accepted++
	return true
}

func (h *Handler) untrack(s *Stream) {
	h.mu.Lock()
	delete(h.streams, s)
	h.stats.add(s)
	h.mu.Unlock()
	h.active.Done()
}

func (h *Handler) isShuttingDown() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.shuttingDown
}

// ActiveStreams returns the count of connections being served.
func (h *Handler) ActiveStreams() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.streams)
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
