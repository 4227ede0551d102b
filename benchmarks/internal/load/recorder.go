package load

import (
	"context"
	"encoding/binary"
	"slices"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// stallTimeout ends the wait for deliveries once none has come for this
// long: what has not arrived by then was dropped.
const stallTimeout = 2 * time.Second

// recorder is the subscriber's side: it notes each delivery and its
// latency.
type recorder struct {
	base     time.Time
	messages int // per publisher

	mu        sync.Mutex
	seen      []bool // publisher*messages + seq
	latencies []time.Duration
	dups      int
	last      time.Time
	progress  chan struct{} // gets a value after deliveries, without blocking
}

func newRecorder(base time.Time, publishers, messages int) *recorder {
	return &recorder{
		base:      base,
		messages:  messages,
		seen:      make([]bool, publishers*messages),
		latencies: make([]time.Duration, 0, publishers*messages),
		progress:  make(chan struct{}, 1),
	}
}

// onMessage is the subscription's handler.
func (r *recorder) onMessage(_ paho.Client, m paho.Message) {
	now := time.Now()
	p := m.Payload()
	if len(p) < HeaderSize {
		return
	}
	sentAt := time.Duration(binary.BigEndian.Uint64(p[0:]))
	pub := int(binary.BigEndian.Uint32(p[8:]))
	seq := int(binary.BigEndian.Uint32(p[12:]))
	i := pub*r.messages + seq
	r.mu.Lock()
	switch {
	case seq >= r.messages || i >= len(r.seen):
	case r.seen[i]:
		r.dups++
	default:
		r.seen[i] = true
		r.latencies = append(r.latencies, now.Sub(r.base)-sentAt)
		r.last = now
	}
	r.mu.Unlock()
	select {
	case r.progress <- struct{}{}:
	default:
	}
}

// waitFor waits until want messages arrived, deliveries stall, or ctx ends;
// it reports whether all arrived.
func (r *recorder) waitFor(ctx context.Context, want int) bool {
	stall := time.NewTimer(stallTimeout)
	defer stall.Stop()
	for {
		r.mu.Lock()
		got := len(r.latencies)
		r.mu.Unlock()
		if got >= want {
			return true
		}
		select {
		case <-r.progress:
			stall.Reset(stallTimeout)
		case <-stall.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// summary returns the distinct deliveries, the duplicates and the latency
// percentiles.
func (r *recorder) summary() (received, dups int, p50, p99 time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := slices.Clone(r.latencies)
	slices.Sort(l)
	return len(l), r.dups, percentile(l, 0.50), percentile(l, 0.99)
}

func (r *recorder) lastArrival() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// percentile returns the q-quantile of sorted (nearest rank).
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
