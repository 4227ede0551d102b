package testbroker

import "testing"

// BlackHole returns a loopback TCP address where dials time out, as to a
// host that is gone: a listening socket whose accept queue is full, so the
// kernel drops every SYN. Linux only; elsewhere it fails the test.
func BlackHole(t testing.TB) string {
	t.Helper()
	s, err := dropSYNs(0)
	if err != nil {
		t.Fatalf("black hole: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s.addr
}
