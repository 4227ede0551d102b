package testbroker

import (
	"log/slog"
	"testing"
)

// Logger returns a logger that writes to the test's log, at debug level,
// until the test ends; what comes later (from a goroutine that outlives the
// test) is dropped.
func Logger(t testing.TB) *slog.Logger {
	w := &testLog{t: t}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
