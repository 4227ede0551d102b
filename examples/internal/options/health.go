package options

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// The health checks, served on the public listener in front of the app's
// routes, for load balancers, orchestrators and uptime monitors. They
// answer whatever the Host header (probes often use the server's IP
// address, or a name of the balancer's own), and say nothing about the
// server beyond "up" and "ready": no address, no version, no counts.
const (
	// HealthPath answers 200 "ok" while the process serves HTTP.
	HealthPath = "/healthz"
	// ReadyPath answers 200 "ready" while the app can serve MQTT clients
	// (App.Readiness), 503 with the reason otherwise.
	ReadyPath = "/readyz"
)

// Bounds of a readiness check.
const (
	// ReadyTimeout bounds one check: a broker that does not accept a TCP
	// connection within it is not ready for clients either.
	ReadyTimeout = time.Second
	// readyTTL is how long an answer is reused: however many probes, or a
	// flood of requests to /readyz, the check (a TCP connection to the
	// broker, for the proxy) runs at most once per second.
	readyTTL = time.Second
)

// Unready is the error of a failed readiness check: Reason is what /readyz
// answers, for anyone to read; Err holds the details, for the log only.
type Unready struct {
	Reason string
	Err    error
}

func (e *Unready) Error() string {
	if e.Err == nil {
		return e.Reason
	}
	return e.Reason + ": " + e.Err.Error()
}

func (e *Unready) Unwrap() error { return e.Err }

// withHealth serves HealthPath and ReadyPath, and passes other requests to
// next. check is App.Readiness (nil: always ready); once ctx is done (the
// server is shutting down), ReadyPath answers 503.
func withHealth(ctx context.Context, check func(context.Context) error, log *slog.Logger, next http.Handler) http.Handler {
	ready := &readiness{check: check, log: log}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case HealthPath:
			answerHealth(w, r, http.StatusOK, "ok")
		case ReadyPath:
			switch err := ready.get(ctx); {
			case err == nil:
				answerHealth(w, r, http.StatusOK, "ready")
			default:
				reason := "not ready"
				var u *Unready
				if errors.As(err, &u) {
					reason = "not ready: " + u.Reason
				}
				answerHealth(w, r, http.StatusServiceUnavailable, reason)
			}
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// answerHealth writes a health check's answer, to GET and HEAD only.
func answerHealth(w http.ResponseWriter, r *http.Request, status int, body string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method == http.MethodGet {
		_, _ = w.Write([]byte(body + "\n"))
	}
}

// readiness runs a readiness check at most once per readyTTL, and logs its
// changes (the first answer too, when it is "not ready").
type readiness struct {
	check func(context.Context) error
	log   *slog.Logger

	mu      sync.Mutex // held during a check: concurrent probes wait for it
	checked time.Time
	err     error
}

// get returns the check's answer, nil when ready.
func (r *readiness) get(ctx context.Context) error {
	if ctx.Err() != nil {
		return &Unready{Reason: "shutting down"}
	}
	if r.check == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.checked.IsZero() && time.Since(r.checked) < readyTTL {
		return r.err
	}
	cctx, cancel := context.WithTimeout(ctx, ReadyTimeout)
	err := r.check(cctx)
	cancel()
	switch {
	case err != nil && (r.checked.IsZero() || r.err == nil):
		r.log.Warn("not ready: "+ReadyPath+" answers 503", "err", err)
	case err == nil && r.err != nil:
		r.log.Info("ready again: " + ReadyPath + " answers 200")
	}
	r.checked, r.err = time.Now(), err
	return err
}
