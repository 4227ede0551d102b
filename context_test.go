package mqttws

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

type ctxKey struct{}

// A stream's context carries its parent's values but not its
// cancellation, and behaves as a canceled context once canceled: Done
// closed, Err and Cause context.Canceled, derived contexts canceled, the
// functions registered with AfterFunc run once, unless stopped before.
func TestStreamContextCancels(t *testing.T) {
	parent, cancelParent := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "identity"))
	ctx, cancel := newStreamContext(parent)
	cancelParent()
	if got := ctx.Value(ctxKey{}); got != "identity" {
		t.Errorf("Value = %v, want the parent's value", got)
	}
	if err := ctx.Err(); err != nil {
		t.Fatalf("Err = %v before cancel, want nil: the parent's cancellation must not reach it", err)
	}
	derived, cancelDerived := context.WithTimeout(ctx, time.Hour)
	defer cancelDerived()
	child, cancelChild := context.WithCancel(ctx)
	defer cancelChild()
	var ran, stoppedRan atomic.Int32
	ranCh := make(chan struct{}, 2)
	stop := ctx.AfterFunc(func() { stoppedRan.Add(1) })
	ctx.AfterFunc(func() { ran.Add(1); ranCh <- struct{}{} })
	context.AfterFunc(ctx, func() { ran.Add(1); ranCh <- struct{}{} })
	if !stop() {
		t.Fatal("stop before cancel = false, want true")
	}
	if stop() {
		t.Fatal("second stop = true, want false")
	}
	// The two derived contexts and the two functions not stopped, and no
	// goroutine: package context used the AfterFunc method.
	if len(ctx.funcs) != 4 {
		t.Fatalf("%d functions registered, want 4", len(ctx.funcs))
	}
	done := ctx.Done()
	select {
	case <-done:
		t.Fatal("Done closed before cancel")
	default:
	}

	cancel()
	cancel() // a second cancel does nothing
	select {
	case <-done:
	default:
		t.Fatal("Done not closed after cancel")
	}
	if !errors.Is(ctx.Err(), context.Canceled) || !errors.Is(context.Cause(ctx), context.Canceled) {
		t.Errorf("Err = %v, Cause = %v, want context.Canceled", ctx.Err(), context.Cause(ctx))
	}
	for _, d := range []context.Context{derived, child} {
		select {
		case <-d.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("a derived context was not canceled")
		}
		if !errors.Is(d.Err(), context.Canceled) {
			t.Errorf("derived Err = %v, want context.Canceled", d.Err())
		}
	}
	for range 2 {
		select {
		case <-ranCh:
		case <-time.After(5 * time.Second):
			t.Fatal("an AfterFunc function did not run")
		}
	}
	if ran.Load() != 2 || stoppedRan.Load() != 0 {
		t.Errorf("AfterFunc functions ran %d times (want 2), the stopped one %d (want 0)", ran.Load(), stoppedRan.Load())
	}
	if len(ctx.funcs) != 0 {
		t.Errorf("%d functions still registered after cancel, want 0", len(ctx.funcs))
	}
	// Registered after the cancel: runs at once.
	late := make(chan struct{})
	if ctx.AfterFunc(func() { close(late) })() {
		t.Error("stop after cancel = true, want false")
	}
	select {
	case <-late:
	case <-time.After(5 * time.Second):
		t.Fatal("an AfterFunc function registered after cancel did not run")
	}
	// Done asked for the first time after the cancel is closed too.
	c2, cancel2 := newStreamContext(context.Background())
	cancel2()
	select {
	case <-c2.Done():
	default:
		t.Fatal("Done first asked after cancel is not closed")
	}
}
