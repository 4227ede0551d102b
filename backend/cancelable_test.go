package backend

import (
	"context"
	"testing"
	"time"
)

// afterFuncCtx is a context with an AfterFunc method of its own, like the
// Handler's stream context.
type afterFuncCtx struct {
	context.Context
}

func (c afterFuncCtx) AfterFunc(f func()) func() bool { return context.AfterFunc(c.Context, f) }

// The dial context ends with the stream's context and with its own cancel,
// and keeps the deadline of a context that has one.
func TestCancelableEndsWithItsParentAndKeepsItsDeadline(t *testing.T) {
	parent, cancelParent := context.WithCancel(context.Background())
	ctx, cancel := cancelable(afterFuncCtx{parent})
	defer cancel()
	cancelParent()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the dial context did not end with its parent")
	}

	own, cancelOwn := cancelable(afterFuncCtx{context.Background()})
	cancelOwn()
	if own.Err() == nil {
		t.Fatal("the dial context did not end with its own cancel")
	}

	deadline := time.Now().Add(time.Hour)
	timed, cancelTimed := context.WithDeadline(context.Background(), deadline)
	defer cancelTimed()
	dial, cancelDial := cancelable(afterFuncCtx{timed})
	defer cancelDial()
	if got, ok := dial.Deadline(); !ok || !got.Equal(deadline) {
		t.Fatalf("the dial context's deadline is %v (%v), want its parent's %v", got, ok, deadline)
	}
}
