package mqttws

import "context"

// track registers a new stream; it fails once Shutdown has begun.
func (h *Handler) track(s *Stream) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.shuttingDown {
		return false
	}
	if h.streams == nil {
		h.streams = make(map[*Stream]struct{})
	}
	h.streams[s] = struct{}{}
	h.active.Add(1)
	return true
}

func (h *Handler) untrack(s *Stream) {
	h.mu.Lock()
	delete(h.streams, s)
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
