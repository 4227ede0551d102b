package mochi

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/mqttws/mqttws"
)

// stream is the *mqttws.Stream as mochi sees it: the stream's methods,
// Subprotocol included, are there for hooks. Read, SetDeadline and Close
// also follow the CONNECT deadline, so that a client whose CONNECT did not
// come within the ConnectTimeout is closed with ClosePolicyViolation (1008)
// and a reason that says so, as the handler's FirstDataTimeout does, rather
// than with the 1000 of a normal close.
type stream struct {
	*mqttws.Stream
	ctx            context.Context // the backend's: done once the stream is closing
	connectTimeout time.Duration
	connecting     atomic.Bool // mochi has not set a deadline of its own yet
	connectExpired atomic.Bool
	endedFirst     atomic.Bool // a read failed because the stream was closing already
}

func newStream(ctx context.Context, s *mqttws.Stream, connectTimeout time.Duration) *stream {
	c := &stream{Stream: s, ctx: ctx, connectTimeout: connectTimeout}
	c.connecting.Store(connectTimeout > 0)
	return c
}

// Read reads from the stream, noting an expired CONNECT deadline, and a
// read that failed because the stream was closing (the handler closed it,
// or mochi did): mochi's error is then no news.
func (s *stream) Read(p []byte) (int, error) {
	n, err := s.Stream.Read(p)
	if err != nil {
		if s.connecting.Load() && errors.Is(err, os.ErrDeadlineExceeded) {
			s.connectExpired.Store(true)
		}
		if s.ctx.Err() != nil {
			s.endedFirst.Store(true)
		}
	}
	return n, err
}

// SetDeadline sets the stream's deadlines. mochi calls it once it has read
// CONNECT, replacing the CONNECT deadline.
func (s *stream) SetDeadline(t time.Time) error {
	s.connecting.Store(false)
	return s.Stream.SetDeadline(t)
}

// Close closes the stream: with 1008 when the CONNECT deadline expired, with
// CloseNormal (1000) otherwise.
func (s *stream) Close() error {
	if s.connectExpired.Load() {
		return s.Stream.CloseWith(mqttws.ClosePolicyViolation, s.connectTimeoutReason())
	}
	return s.Stream.Close()
}

// connectTimeoutReason is the close reason of a client whose CONNECT did not
// come within the ConnectTimeout.
func (s *stream) connectTimeoutReason() string {
	return fmt.Sprintf("no MQTT CONNECT packet within %v", s.connectTimeout)
}
