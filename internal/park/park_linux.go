//go:build linux

package park

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
)

// Supported reports whether parking works on this system.
const Supported = true

// Waiter waits for one descriptor to become readable, and calls its
// Readier's Ready once per Arm when it is (or when it fails or hangs up).
// Ready runs on the poller's goroutine: it must not block. The zero Waiter
// is ready for Init.
type Waiter struct {
	rc    syscall.RawConn
	key   uint64
	r     Readier
	added atomic.Bool // the descriptor is in the epoll set
}

// poller is the process's epoll set and its one waiting goroutine, which
// runs while waiters are registered.
type poller struct {
	once    sync.Once
	initErr error
	epfd    int
	wakeR   int // read end of a pipe that wakes the goroutine to end
	wakeW   int

	mu sync.Mutex
	// The registered waiters by slot: a waiter's key (its epoll data) is
	// its slot plus one in the low 32 bits (0 is the wake pipe's) and a
	// generation in the high ones, so that an event for a waiter closed
	// meanwhile cannot reach the next one in its slot. (A slice and a free
	// list cost a third of what a map did per idle connection.)
	slots   []*Waiter
	free    []uint32 // slots of closed waiters
	count   int      // waiters registered
	gen     uint32
	running bool
	broken  error // epoll_wait failed: nothing parks any more
}

var the poller

// wakeKey is the pipe's key in the epoll set.
const wakeKey = 0

func (p *poller) init() error {
	p.once.Do(func() {
		epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			p.initErr = fmt.Errorf("park: epoll_create1: %w", err)
			return
		}
		var fds [2]int
		if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
			_ = syscall.Close(epfd)
			p.initErr = fmt.Errorf("park: pipe2: %w", err)
			return
		}
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN}
		if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, fds[0], &ev); err != nil {
			_ = syscall.Close(epfd)
			_ = syscall.Close(fds[0])
			_ = syscall.Close(fds[1])
			p.initErr = fmt.Errorf("park: epoll_ctl: %w", err)
			return
		}
		p.epfd, p.wakeR, p.wakeW = epfd, fds[0], fds[1]
	})
	return p.initErr
}

// Init registers w with the poller, for rc's descriptor, which the first
// Arm adds to the epoll set: r.Ready is called only after Arm. Close must
// follow; a waiter still armed then is taken out of the set (or the kernel
// drops it when the descriptor closes).
func (w *Waiter) Init(rc syscall.RawConn, r Readier) error {
	if err := the.init(); err != nil {
		return err
	}
	the.mu.Lock()
	defer the.mu.Unlock()
	if the.broken != nil {
		return the.broken
	}
	var slot uint32
	if n := len(the.free); n > 0 {
		slot = the.free[n-1]
		the.free = the.free[:n-1]
	} else {
		slot = uint32(len(the.slots))
		the.slots = append(the.slots, nil)
	}
	the.gen++
	w.rc, w.key, w.r = rc, uint64(slot+1)|uint64(the.gen)<<32, r
	the.slots[slot] = w
	the.count++
	if !the.running {
		the.running = true
		go the.loop()
	}
	return nil
}

// errClosed is Arm's error once the descriptor is closed.
var errClosed = errors.New("park: connection closed")

// Arm asks for one call of ready once the descriptor is readable: at once
// if it already is. It fails once the connection is closed; ready is then
// never called.
func (w *Waiter) Arm() error {
	the.mu.Lock()
	broken := the.broken
	the.mu.Unlock()
	if broken != nil {
		return broken
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT}
	ev.Fd, ev.Pad = int32(uint32(w.key)), int32(uint32(w.key>>32))
	var ctlErr error
	// Inside Control the descriptor cannot be closed, so its number cannot
	// be reused by another connection meanwhile.
	err := w.rc.Control(func(fd uintptr) {
		op := syscall.EPOLL_CTL_MOD
		if !w.added.Load() {
			op = syscall.EPOLL_CTL_ADD
		}
		ctlErr = syscall.EpollCtl(the.epfd, op, int(fd), &ev)
		switch {
		case ctlErr == syscall.EEXIST: // added by an Arm that ran just before
			ctlErr = syscall.EpollCtl(the.epfd, syscall.EPOLL_CTL_MOD, int(fd), &ev)
		case ctlErr == syscall.ENOENT:
			ctlErr = syscall.EpollCtl(the.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
		}
		if ctlErr == nil {
			w.added.Store(true)
		}
	})
	if err != nil {
		return errClosed
	}
	if ctlErr != nil {
		return fmt.Errorf("park: epoll_ctl: %w", ctlErr)
	}
	return nil
}

// Close unregisters the waiter: ready is not called after it returns,
// unless a call is under way.
func (w *Waiter) Close() {
	if w.added.Load() {
		_ = w.rc.Control(func(fd uintptr) {
			_ = syscall.EpollCtl(the.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
		})
	}
	the.mu.Lock()
	defer the.mu.Unlock()
	if slot := uint32(w.key) - 1; w.key != 0 && int(slot) < len(the.slots) && the.slots[slot] == w {
		the.slots[slot] = nil
		the.free = append(the.free, slot)
		the.count--
	}
	if the.count == 0 && the.running {
		_, _ = syscall.Write(the.wakeW, []byte{0})
	}
}

// loop waits for events and calls the waiters' ready functions, until no
// waiter is left.
func (p *poller) loop() {
	var events [128]syscall.EpollEvent
	for {
		n, err := syscall.EpollWait(p.epfd, events[:], -1)
		if err != nil && !errors.Is(err, syscall.EINTR) {
			// It cannot fail on a valid epoll set; if it does, every
			// waiter is woken, and Arm fails from now on, so that they
			// read on as goroutines.
			p.mu.Lock()
			p.broken = fmt.Errorf("park: epoll_wait: %w", err)
			for _, w := range p.slots {
				if w != nil {
					w.r.Ready()
				}
			}
			p.running = false
			p.mu.Unlock()
			return
		}
		p.mu.Lock()
		for _, ev := range events[:max(n, 0)] {
			key := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if key == wakeKey {
				var b [64]byte
				_, _ = syscall.Read(p.wakeR, b[:])
				continue
			}
			if slot := uint32(key) - 1; int(slot) < len(p.slots) {
				if w := p.slots[slot]; w != nil && w.key == key {
					w.r.Ready()
				}
			}
		}
		if p.count == 0 {
			p.running = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
}
