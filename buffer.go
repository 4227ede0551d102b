package mqttws

import (
	"io"
	"sync"
)

// idleReadSize is the size of the small buffer a stream reads into when it
// holds no pooled buffer: big enough for a frame header and a typical small
// MQTT packet, small enough that idle connections cost next to nothing.
const idleReadSize = 128

// minReadBufferSize is the least pooled buffer size: a whole control frame
// (14-byte header and 125-byte payload) must fit in it.
const minReadBufferSize = 256

// bufferPool hands out read buffers of one size.
type bufferPool struct {
	size int
	pool sync.Pool
}

func (p *bufferPool) get() *[]byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, p.size)
	return &b
}

func (p *bufferPool) put(b *[]byte) { p.pool.Put(b) }

// readBuffer buffers what the client sends for frame headers and small
// payloads. It holds a pooled buffer only while unread bytes are in it, or
// while it waits right after a read that filled its buffer (data is
// streaming in, and a pooled buffer takes it in fewer system calls): when
// the buffer runs dry after a short read, the next read goes to a small
// inline array. So a connection that stalls, between frames or inside one,
// holds none unless it stalls right at the end of a full read. Payload reads
// at least a pooled buffer long go straight into the caller's slice.
type readBuffer struct {
	src     io.Reader
	traffic *traffic // told of every read that returns bytes
	pool    *bufferPool
	pooled  *[]byte // nil unless buf is a pooled buffer
	buf     []byte  // small[:] or *pooled
	r, w    int     // unread bytes are buf[r:w]
	more    bool    // the last read filled its buffer: more is likely waiting
	small   [idleReadSize]byte
}

func (b *readBuffer) init(src io.Reader, pool *bufferPool, t *traffic) {
	b.src = src
	b.traffic = t
	b.pool = pool
	b.buf = b.small[:]
}

// peek returns the next n bytes without consuming them, reading as needed.
// n must not exceed minReadBufferSize. A read error leaves the buffer as it
// was, so peek can be called again after a timeout.
func (b *readBuffer) peek(n int) ([]byte, error) {
	for b.w-b.r < n {
		err := b.fill(n)
		if err == io.EOF && b.w > b.r {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return nil, err
		}
	}
	return b.buf[b.r : b.r+n], nil
}

// buffered returns the count of unread bytes held.
func (b *readBuffer) buffered() int { return b.w - b.r }

// discard consumes n bytes returned by peek.
func (b *readBuffer) discard(n int) {
	b.r += n
	if b.r == b.w {
		b.release()
	}
}

// read copies buffered bytes into p. With nothing buffered, it reads from
// the source straight into p when p is at least a pooled buffer long, and
// otherwise fills the buffer (see fill): a short read into p would cost a
// system call for a few bytes, while the buffer takes what follows (the next
// frames, as data is flowing) in the same call.
func (b *readBuffer) read(p []byte) (int, error) {
	if b.r == b.w && len(p) < b.pool.size {
		if err := b.fill(1); err != nil {
			return 0, err
		}
	}
	if b.r < b.w {
		n := copy(p, b.buf[b.r:b.w])
		b.discard(n)
		return n, nil
	}
	b.more = false
	n, err := b.src.Read(p)
	if n > 0 {
		b.traffic.received()
	}
	return n, err
}

// fill reads once from the source, making room for need contiguous bytes.
// It reads into the inline array unless that holds too little or the last
// read filled its buffer (then more data is likely waiting, and a pooled
// buffer takes it in fewer calls).
func (b *readBuffer) fill(need int) error {
	if b.r == b.w && b.pooled == nil {
		b.r, b.w = 0, 0
	}
	if len(b.buf)-b.r < need || b.w == len(b.buf) || (b.more && b.pooled == nil) {
		b.grow()
	}
	n, err := b.src.Read(b.buf[b.w:])
	b.more = b.w+n == len(b.buf)
	b.w += n
	if n > 0 {
		b.traffic.received()
		return nil
	}
	switch {
	case b.r == b.w:
		b.release() // hold no pooled buffer while failing
	case b.pooled != nil && b.w-b.r <= len(b.small):
		// A frame header or control frame cut short by a stall waits in
		// the inline array, so that a client that stops there (past a read
		// that filled the array) does not hold a pooled buffer.
		b.shrink()
	}
	if err == nil {
		return io.ErrNoProgress
	}
	return err
}

// grow moves the unread bytes to the start of a pooled buffer.
func (b *readBuffer) grow() {
	if b.pooled == nil {
		b.pooled = b.pool.get()
		n := copy(*b.pooled, b.buf[b.r:b.w])
		b.buf = *b.pooled
		b.r, b.w = 0, n
		return
	}
	n := copy(b.buf, b.buf[b.r:b.w])
	b.r, b.w = 0, n
}

// shrink moves the unread bytes, no more than the inline array holds, to
// its start, and returns the pooled buffer.
func (b *readBuffer) shrink() {
	n := copy(b.small[:], b.buf[b.r:b.w])
	b.pool.put(b.pooled)
	b.pooled = nil
	b.buf = b.small[:]
	b.r, b.w = 0, n
}

// release returns an empty pooled buffer and goes back to the inline one.
//
// It keeps more: when the inline array was filled, the next read takes a
// pooled buffer even though the array has been drained since.
func (b *readBuffer) release() {
	b.r, b.w = 0, 0
	if b.pooled != nil {
		b.pool.put(b.pooled)
		b.pooled = nil
		b.buf = b.small[:]
	}
}
