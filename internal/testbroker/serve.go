package testbroker

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqttws/mqttws"
)

// shutdownTimeout bounds Handler.Shutdown when a test ends.
const shutdownTimeout = 10 * time.Second

// Server is an mqttws.Handler served at /mqtt by an httptest.Server on
// 127.0.0.1.
type Server struct {
	Handler *mqttws.Handler
	// URL is the handler's WebSocket URL, "ws://127.0.0.1:port/mqtt".
	URL string

	t         testing.TB
	http      *httptest.Server
	closeOnce sync.Once
}

// Serve serves h at /mqtt. The server is closed when the test ends, if Close
// was not called before. A handler without a Logger logs to the test's log,
// at debug level.
func Serve(t testing.TB, h *mqttws.Handler) *Server {
	t.Helper()
	if h.Logger == nil {
		w := &testLog{t: t}
		t.Cleanup(w.stop) // after Close, registered below
		h.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	mux := http.NewServeMux()
	mux.Handle("/mqtt", h)
	hs := httptest.NewServer(mux)
	s := &Server{
		Handler: h,
		URL:     "ws" + strings.TrimPrefix(hs.URL, "http") + "/mqtt",
		t:       t,
		http:    hs,
	}
	t.Cleanup(s.Close)
	return s
}

// Close closes the HTTP server, then shuts the handler down: every stream
// still open is closed with 1001 and its backend has returned when Close
// returns.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.http.Close()
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := s.Handler.Shutdown(ctx); err != nil {
			s.t.Errorf("handler shutdown: %v (%d streams still active)", err, s.Handler.Stats().Active)
		}
	})
}

// WaitActiveStreams waits until the handler serves want streams, and fails
// the test if it does not within timeout.
func (s *Server) WaitActiveStreams(want int, timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := s.Handler.Stats().Active
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%d streams active after %v, want %d", got, timeout, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testLog writes to the test's log until the test is over: t.Log then
// panics.
type testLog struct {
	mu      sync.Mutex
	t       testing.TB
	stopped bool
}

func (w *testLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testLog) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
}
