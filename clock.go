package mqttws

import (
	"container/heap"
	"sync"
	"time"
)

// tickClock runs the keepalive ticks of a Handler's streams from one timer:
// each stream waiting for its next tick is an entry in a heap ordered by
// when the tick is due, rather than a time.Timer of its own (112 bytes, a
// closure and a runtime timer per idle connection). Ticks run each in a
// goroutine of their own, as time.AfterFunc's functions do, so that a tick
// whose ping waits on a slow client delays no other stream's.
//
// Its zero value is ready to use. Lock order: a keepalive's mu, then the
// clock's.
type tickClock struct {
	mu    sync.Mutex
	base  time.Time   // the origin of due times; set on first use
	queue tickQueue   // the streams waiting, earliest due first
	timer *time.Timer // fires at armed; made on first use
	armed time.Duration
	set   bool // timer is set to fire at armed
}

// now returns the time since base, with mu held.
func (c *tickClock) nowLocked() time.Duration {
	if c.base.IsZero() {
		c.base = time.Now()
	}
	return time.Since(c.base)
}

// schedule sets k's next tick d from now, in place of any other.
func (c *tickClock) schedule(k *keepalive, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k.due = c.nowLocked() + d
	if k.index < 0 {
		heap.Push(&c.queue, k)
	} else {
		heap.Fix(&c.queue, k.index)
	}
	c.armLocked()
}

// remove cancels k's next tick, if any.
func (c *tickClock) remove(k *keepalive) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if k.index >= 0 {
		heap.Remove(&c.queue, k.index)
	}
	// The timer stays set: firing with nothing due costs one wake-up.
}

// armLocked sets the timer for the earliest tick, unless it is set to fire
// no later than that already.
func (c *tickClock) armLocked() {
	if len(c.queue) == 0 {
		return
	}
	due := c.queue[0].due
	if c.set && c.armed <= due {
		return
	}
	d := due - c.nowLocked()
	if c.timer == nil {
		c.timer = time.AfterFunc(d, c.fire)
	} else {
		c.timer.Reset(d)
	}
	c.armed, c.set = due, true
}

// fire runs the ticks that are due and sets the timer for the next one.
func (c *tickClock) fire() {
	var due []*keepalive
	c.mu.Lock()
	now := c.nowLocked()
	for len(c.queue) > 0 && c.queue[0].due <= now {
		due = append(due, heap.Pop(&c.queue).(*keepalive))
	}
	c.set = false
	c.armLocked()
	c.mu.Unlock()
	for _, k := range due {
		go k.tick()
	}
}

// tickQueue is a heap of keepalives by due time (container/heap); each
// keepalive knows its index in it, -1 when it is not in it.
type tickQueue []*keepalive

func (q tickQueue) Len() int           { return len(q) }
func (q tickQueue) Less(i, j int) bool { return q[i].due < q[j].due }

func (q tickQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}

func (q *tickQueue) Push(x any) {
	k := x.(*keepalive)
	k.index = len(*q)
	*q = append(*q, k)
}

func (q *tickQueue) Pop() any {
	old := *q
	k := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	k.index = -1
	return k
}
