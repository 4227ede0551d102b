package mqttws

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mqttws/mqttws/internal/loopback"
)

// Streams sharing one clock, scheduled out of order, each get their ping
// when their own interval is up, and a closed stream leaves the clock's
// queue.
func TestStreamsSharingAClockEachPingOnTime(t *testing.T) {
	var clock tickClock
	intervals := []time.Duration{900, 300, 600, 450, 750, 150}
	type result struct {
		i    int
		took time.Duration
		err  error
	}
	results := make(chan result, len(intervals))
	var streams []*Stream
	start := time.Now()
	for i, ms := range intervals {
		server, client := loopback.Pair(t)
		_, cancel := context.WithCancel(context.Background())
		s := newStream(server, server, streamConfig{
			pool:     &bufferPool{size: DefaultReadBufferSize},
			cancel:   cancel,
			settings: &streamSettings{pingInterval: ms * time.Millisecond, pongTimeout: 10 * time.Second, writeTimeout: time.Second, closeTimeout: time.Second, clock: &clock},
		})
		streams = append(streams, s)
		t.Cleanup(s.closeConn)
		go func() {
			h, err := ws.ReadHeader(client)
			if err == nil && h.OpCode != ws.OpPing {
				err = fmt.Errorf("a frame with opcode %d, not a ping", h.OpCode)
			}
			results <- result{i, time.Since(start), err}
		}()
	}
	got := make([]time.Duration, len(intervals))
	for range intervals {
		r := <-results
		if r.err != nil {
			t.Fatalf("stream %d: %v", r.i, r.err)
		}
		got[r.i] = r.took
	}
	for i, ms := range intervals {
		want := ms * time.Millisecond
		// The margin is for a loaded machine; a clock that fired only for
		// the first stream scheduled (900 ms) would miss it.
		if got[i] < want || got[i] > want+500*time.Millisecond {
			t.Errorf("stream %d (PingInterval %v): ping after %v", i, want, got[i])
		}
	}
	for _, s := range streams {
		s.closeConn()
	}
	clock.mu.Lock()
	defer clock.mu.Unlock()
	if n := clock.queue.Len(); n != 0 {
		t.Errorf("%d keepalives still in the clock's queue after every stream closed", n)
	}
}

// Many schedules and removals from many goroutines, with the clock's timer
// firing among them, leave the queue a heap whose entries know their index,
// holding exactly the keepalives whose index says so.
func TestTickClockQueueStaysConsistent(t *testing.T) {
	var clock tickClock
	ks := make([]*keepalive, 200)
	for i := range ks {
		ks[i] = &keepalive{index: -1, stopped: true} // a stopped tick returns at once
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range 2000 {
				k := ks[(g*7919+n*104729)%len(ks)]
				if n%3 == 0 {
					clock.remove(k)
				} else {
					clock.schedule(k, time.Duration(n%50)*time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	clock.mu.Lock()
	defer clock.mu.Unlock()
	for i, k := range clock.queue {
		if k.index != i {
			t.Fatalf("queue[%d] has index %d", i, k.index)
		}
		if parent := (i - 1) / 2; i > 0 && clock.queue[parent].due > k.due {
			t.Fatalf("queue[%d] due %v before its parent's %v", i, k.due, clock.queue[parent].due)
		}
	}
	inQueue := map[*keepalive]bool{}
	for _, k := range clock.queue {
		inQueue[k] = true
	}
	for _, k := range ks {
		if (k.index >= 0) != inQueue[k] {
			t.Fatalf("a keepalive with index %d is in the queue: %v", k.index, inQueue[k])
		}
	}
}
