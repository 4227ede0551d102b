package mqttws

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// traffic records when bytes last moved each way, in nanoseconds of the
// monotonic clock since the stream started. Reads are recorded per system
// call that returned bytes, payload bytes included, so a client sending one
// large frame slowly is alive although no frame header arrives; writes per
// frame sent.
type traffic struct {
	base time.Time
	in   atomic.Int64
	out  atomic.Int64
}

// now returns the time since the stream started.
func (t *traffic) now() time.Duration { return time.Since(t.base) }

func (t *traffic) received() { t.in.Store(int64(t.now())) }
func (t *traffic) sent()     { t.out.Store(int64(t.now())) }

// keepalive watches a stream's traffic: it pings a connection quiet for
// PingInterval in either direction, drops one that stays silent for
// PongTimeout after a ping (a dead peer behind a NAT never says goodbye),
// and closes one that sends no MQTT byte in time after the upgrade.
type keepalive struct {
	s       *Stream
	traffic traffic

	gotData  atomic.Bool // a payload byte came in since the upgrade
	mu       sync.Mutex  // serializes ticks and stop
	stopped  bool
	awaiting bool          // a ping went out to a silent client
	lastPing time.Duration // when the last ping went out; pings are not traffic
	pingAt   time.Duration // when that ping went out
	deadline *time.Timer   // first data

	// The next tick, on the handler's clock (s.set.clock): due and index
	// are the clock's, under its mu.
	due   time.Duration // on the clock's time
	index int           // in the clock's queue; -1: not in it
}

func (k *keepalive) start(s *Stream, firstData time.Duration) {
	k.s = s
	k.index = -1
	k.mu.Lock()
	defer k.mu.Unlock()
	if s.set.pingInterval > 0 {
		s.set.clock.schedule(k, s.set.pingInterval)
	}
	if firstData > 0 {
		k.deadline = time.AfterFunc(firstData, func() { k.firstDataExpired(firstData) })
	}
}

// dataRead notes payload bytes from the client: the first ones end the
// first-data deadline. An empty frame does not count.
func (k *keepalive) dataRead() {
	if k.gotData.Load() {
		return
	}
	k.gotData.Store(true)
	k.mu.Lock()
	if k.deadline != nil {
		k.deadline.Stop()
		k.deadline = nil // an idle connection holds one timer, not two
	}
	k.mu.Unlock()
}

func (k *keepalive) stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopped = true
	k.s.set.clock.remove(k)
	if k.deadline != nil {
		k.deadline.Stop()
	}
}

func (k *keepalive) firstDataExpired(limit time.Duration) {
	if k.gotData.Load() {
		return
	}
	_ = k.s.CloseWith(ClosePolicyViolation, fmt.Sprintf("no data within %v of the upgrade", limit))
}

// tick runs when a ping may be due: PingInterval after the older of the
// last byte in and the last byte out (or the last ping), so that a ping
// follows the last traffic by PingInterval, not by up to twice that. While
// a ping awaits an answer, it runs at the end of PongTimeout.
func (k *keepalive) tick() {
	k.mu.Lock()
	if k.stopped {
		k.mu.Unlock()
		return
	}
	now := k.traffic.now()
	in := time.Duration(k.traffic.in.Load())
	if k.awaiting {
		if in <= k.pingAt {
			if now-k.pingAt >= k.s.set.pongTimeout {
				k.mu.Unlock()
				// Drop without a close handshake: nobody is there to answer.
				k.s.drop(fmt.Sprintf("no answer to a ping within %v", k.s.set.pongTimeout))
				return
			}
			k.s.set.clock.schedule(k, k.pingAt+k.s.set.pongTimeout-now)
			k.mu.Unlock()
			return
		}
		k.awaiting = false
	}
	out := time.Duration(k.traffic.out.Load())
	due := max(min(in, out), k.lastPing) + k.s.set.pingInterval
	if now < due {
		k.s.set.clock.schedule(k, due-now)
		k.mu.Unlock()
		return
	}
	k.mu.Unlock()

	// Not under mu: a failing write closes the stream, which stops k.
	sent := k.s.ping()

	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped {
		return
	}
	if !sent { // a write is under way (traffic enough) or the stream is closing
		k.s.set.clock.schedule(k, k.s.set.pingInterval)
		return
	}
	k.lastPing = now
	if now-in >= k.s.set.pingInterval && k.s.set.pongTimeout > 0 {
		k.awaiting = true
		k.pingAt = now
		k.s.set.clock.schedule(k, min(k.s.set.pingInterval, k.s.set.pongTimeout))
		return
	}
	k.s.set.clock.schedule(k, k.s.set.pingInterval)
}

// ping sends a ping unless a write is under way (which is traffic enough)
// or the stream can no longer send. It reports whether it sent one.
func (s *Stream) ping() bool {
	if !s.writeMu.TryLock() {
		return false
	}
	defer s.writeMu.Unlock()
	if s.writeErr != nil || s.closeSent {
		return false
	}
	s.armWriteDeadline()
	return s.writeFrameLocked(ws.OpPing, nil) == nil
}
