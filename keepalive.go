package mqttws

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// keepalive watches a stream's traffic: it pings a connection that went
// quiet, drops one that stays silent after a ping (a dead peer behind a NAT
// never says goodbye), and closes one that sends no data frame in time after
// the upgrade.
type keepalive struct {
	s            *Stream
	pingInterval time.Duration
	pongTimeout  time.Duration

	wrote        atomic.Bool // a frame went out since the last tick
	read         atomic.Bool // a frame came in since the last tick
	gotData      atomic.Bool // a data frame came in since the upgrade
	mu           sync.Mutex  // serializes ticks and stop
	stopped      bool
	awaiting     bool // a ping went out to a silent client
	pongDeadline time.Time
	ticker       *time.Timer
	deadline     *time.Timer // first data frame
}

func (k *keepalive) start(s *Stream, pingInterval, pongTimeout, firstData time.Duration) {
	k.s = s
	k.pingInterval = pingInterval
	k.pongTimeout = pongTimeout
	k.mu.Lock()
	defer k.mu.Unlock()
	if pingInterval > 0 {
		k.ticker = time.AfterFunc(pingInterval, k.tick)
	}
	if firstData > 0 {
		k.deadline = time.AfterFunc(firstData, func() { k.firstDataExpired(firstData) })
	}
}

// frameRead notes a frame from the client.
func (k *keepalive) frameRead(op ws.OpCode) {
	k.read.Store(true)
	if op.IsData() && !k.gotData.Load() {
		k.gotData.Store(true)
		k.mu.Lock()
		if k.deadline != nil {
			k.deadline.Stop()
		}
		k.mu.Unlock()
	}
}

func (k *keepalive) stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopped = true
	if k.ticker != nil {
		k.ticker.Stop()
	}
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

// tick runs every PingInterval, and sooner when a pinged client's
// PongTimeout ends first.
func (k *keepalive) tick() {
	k.mu.Lock()
	if k.stopped {
		k.mu.Unlock()
		return
	}
	now := time.Now()
	read := k.read.Swap(false)
	wrote := k.wrote.Swap(false)
	if k.awaiting && !read {
		if !now.Before(k.pongDeadline) {
			k.mu.Unlock()
			// Drop without a close handshake: nobody is there to answer.
			k.s.drop(fmt.Sprintf("no answer to a ping within %v", k.pongTimeout))
			return
		}
		k.ticker.Reset(min(k.pingInterval, k.pongDeadline.Sub(now)))
		k.mu.Unlock()
		return
	}
	k.awaiting = false
	k.mu.Unlock()

	// Not under mu: a failing write closes the stream, which stops k.
	sent := (!wrote || !read) && k.s.ping()

	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped {
		return
	}
	next := k.pingInterval
	if sent && !read && k.pongTimeout > 0 {
		k.awaiting = true
		k.pongDeadline = now.Add(k.pongTimeout)
		next = min(k.pingInterval, k.pongTimeout)
	}
	k.ticker.Reset(next)
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
	if s.writeFrameLocked(ws.OpPing, nil) != nil {
		return false
	}
	s.keepalive.wrote.Store(false) // a ping is not traffic
	return true
}
