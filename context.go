package mqttws

import (
	"context"
	"slices"
	"sync"
	"time"
)

// streamContext is a stream's backend context: the values of its parent
// (the request's context, or the one Authorize returned) without its
// cancellation, canceled once the stream closes.
//
// It has an AfterFunc method, which package context uses for the contexts
// derived from it (context.WithCancel, WithTimeout), so that they cost no
// children map here; a backend may call it too (the parked relay does).
// A context.WithCancel held for the connection's life cost an idle
// connection about 400 bytes more.
type streamContext struct {
	mu     sync.Mutex
	values context.Context // context.WithoutCancel(parent); nil once let go (see dropValues)
	done   chan struct{}   // made on first use
	err    error
	funcs  []*afterFunc // to run once canceled
}

// afterFunc is a function registered with streamContext.AfterFunc.
type afterFunc struct{ f func() }

// closedChan is the Done channel of a context canceled before anyone asked.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// newStreamContext returns a context with parent's values, and the
// function that cancels it.
func newStreamContext(parent context.Context) (*streamContext, context.CancelFunc) {
	c := &streamContext{values: context.WithoutCancel(parent)}
	return c, c.cancel
}

// Deadline reports no deadline: the stream's life has none.
func (c *streamContext) Deadline() (time.Time, bool) { return time.Time{}, false }

// Value returns the parent's value for key, or nil once dropValues ran.
func (c *streamContext) Value(key any) any {
	c.mu.Lock()
	values := c.values
	c.mu.Unlock()
	if values == nil {
		return nil
	}
	return values.Value(key)
}

// dropValues lets go of the parent, whose values Value no longer returns.
// The handler calls it once a backend detached the stream (see park.go):
// the backend that may detach, backend.Dialer, reads no values after it,
// and an idle connection then keeps nothing of net/http's request and
// connection contexts (about 320 bytes).
func (c *streamContext) dropValues() {
	c.mu.Lock()
	c.values = nil
	c.mu.Unlock()
}

// Done returns a channel closed once the stream closes.
func (c *streamContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		if c.err != nil {
			return closedChan
		}
		c.done = make(chan struct{})
	}
	return c.done
}

// Err returns context.Canceled once the stream closes, nil before.
func (c *streamContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// AfterFunc arranges for f to run in its own goroutine once the context is
// canceled (at once if it is), like context.AfterFunc; stop unregisters it
// and reports whether it did so before f was started.
func (c *streamContext) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	a := &afterFunc{f: f}
	c.funcs = append(c.funcs, a)
	c.mu.Unlock()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		i := slices.Index(c.funcs, a)
		if i < 0 {
			return false
		}
		c.funcs = slices.Delete(c.funcs, i, i+1)
		return true
	}
}

// cancel cancels the context once: Done is closed and the registered
// functions start.
func (c *streamContext) cancel() {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = context.Canceled
	if c.done != nil {
		close(c.done)
	}
	funcs := c.funcs
	c.funcs = nil
	c.mu.Unlock()
	for _, a := range funcs {
		go a.f()
	}
}
