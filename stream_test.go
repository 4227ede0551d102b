package mqttws_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mqttws/mqttws"
)

// TestRandomFramesAndReadsAreByteExact cuts a byte stream into random frames
// (empty ones and fragmented messages included) with random pings between
// them, reads it with random buffer sizes, and compares.
func TestRandomFramesAndReadsAreByteExact(t *testing.T) {
	for seed := uint64(1); seed <= 8; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 42))
			data := make([]byte, 200_000+rng.IntN(200_000))
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			got := make(chan []byte, 1)
			backend := mqttws.BackendFunc(func(_ context.Context, c net.Conn) error {
				var out []byte
				for len(out) < len(data) {
					buf := make([]byte, 1+rng2(seed).IntN(70_000))
					n, err := c.Read(buf)
					out = append(out, buf[:n]...)
					if err != nil {
						break
					}
				}
				got <- out
				return nil
			})
			c := dial(t, serve(t, &mqttws.Handler{Backend: backend}))
			pongs := 0
			for rest := data; len(rest) > 0; {
				var frames []frame
				for range 1 + rng.IntN(8) {
					n := min(len(rest), rng.IntN(3)*rng.IntN(20_000))
					if rng.IntN(10) == 0 && len(rest) > 0 {
						frames = append(frames, frame{op: ws.OpPing, payload: rest[:min(len(rest), 125)]})
						pongs++
					}
					frames = append(frames, binaryFrame(rest[:n]))
					rest = rest[n:]
				}
				c.send(frames...)
			}
			var out []byte
			select {
			case out = <-got:
			case <-time.After(testTimeout):
				t.Fatal("backend did not get all the data")
			}
			if !bytes.Equal(out, data) {
				t.Fatalf("backend read %d bytes, different from the %d sent", len(out), len(data))
			}
			for ; pongs > 0; pongs-- {
				h, _, err := c.readFrame()
				if err != nil || h.OpCode != ws.OpPong {
					t.Fatalf("want %d more pongs, got %v %v", pongs, h.OpCode, err)
				}
			}
			c.expectClose(mqttws.CloseNormal)
		})
	}
}

func rng2(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 7)) }

// TestRandomWritesAreByteExact writes random-sized chunks, from two
// goroutines taking turns, while the client pings: every server frame is
// valid, and the data comes out whole and in order.
func TestRandomWritesAreByteExact(t *testing.T) {
	for _, frameSize := range []int{0, 1000} {
		t.Run(fmt.Sprint("WriteFrameSize", frameSize), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(uint64(frameSize), 3))
			data := make([]byte, 300_000)
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			backend := mqttws.BackendFunc(func(_ context.Context, c net.Conn) error {
				var mu sync.Mutex
				for rest := data; len(rest) > 0; {
					n := min(len(rest), rng.IntN(10_000))
					mu.Lock()
					if _, err := c.Write(rest[:n]); err != nil {
						mu.Unlock()
						return err
					}
					mu.Unlock()
					rest = rest[n:]
				}
				_, _ = io.Copy(io.Discard, c)
				return nil
			})
			c := dial(t, serve(t, &mqttws.Handler{Backend: backend, WriteFrameSize: frameSize}))
			var got []byte
			sentPings, pongs := 0, 0
			for len(got) < len(data) {
				if sentPings < 20 {
					c.send(frame{op: ws.OpPing, payload: []byte{byte(sentPings)}})
					sentPings++
				}
				h, p, err := c.readFrame()
				if err != nil {
					t.Fatalf("after %d bytes: %v", len(got), err)
				}
				switch h.OpCode {
				case ws.OpBinary:
					if frameSize > 0 && len(p) > frameSize {
						t.Fatalf("frame of %d bytes, over WriteFrameSize %d", len(p), frameSize)
					}
					got = append(got, p...)
				case ws.OpPong:
					if p[0] != byte(pongs) {
						t.Fatalf("pong %d carries %d", pongs, p[0])
					}
					pongs++
				default:
					t.Fatalf("unexpected %v frame", h.OpCode)
				}
			}
			if !bytes.Equal(got, data) {
				t.Fatal("data written differs from data read")
			}
			c.send(frame{op: ws.OpClose, payload: closeBody(1000, "")})
			c.expectClose(mqttws.CloseNormal)
		})
	}
}

// streamUnderTest runs body as the backend of a fresh connection.
func streamUnderTest(t *testing.T, h *mqttws.Handler, body func(s *mqttws.Stream) error) (*client, <-chan error) {
	t.Helper()
	result := make(chan error, 1)
	h.Backend = mqttws.BackendFunc(func(_ context.Context, c net.Conn) error {
		err := body(c.(*mqttws.Stream))
		result <- err
		return err
	})
	return dial(t, serve(t, h)), result
}

func waitResult(t *testing.T, result <-chan error) error {
	t.Helper()
	select {
	case err := <-result:
		return err
	case <-time.After(testTimeout):
		t.Fatal("backend still running")
		return nil
	}
}

func TestReadDeadlineExpiresAndStreamStaysUsable(t *testing.T) {
	t.Parallel()
	c, result := streamUnderTest(t, &mqttws.Handler{}, func(s *mqttws.Stream) error {
		_ = s.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		buf := make([]byte, 10)
		if _, err := s.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("first read: %v, want os.ErrDeadlineExceeded", err)
		}
		_ = s.SetReadDeadline(time.Time{})
		if _, err := s.Write([]byte("ready")); err != nil {
			return err
		}
		n, err := io.ReadFull(s, buf[:6])
		if err != nil || string(buf[:n]) != "abcdef" {
			return fmt.Errorf("read after the deadline: %q %v", buf[:n], err)
		}
		return nil
	})
	c.readData(5)
	// A frame header split across the deadline must not be lost.
	f := binaryFrame([]byte("abcdef")).bytes()
	c.sendRaw(f[:1])
	time.Sleep(20 * time.Millisecond)
	c.sendRaw(f[1:])
	if err := waitResult(t, result); err != nil {
		t.Fatal(err)
	}
	c.expectClose(mqttws.CloseNormal)
}

func TestHeaderSplitAcrossAnExpiredDeadlineIsKept(t *testing.T) {
	t.Parallel()
	c, result := streamUnderTest(t, &mqttws.Handler{}, func(s *mqttws.Stream) error {
		var got []byte
		buf := make([]byte, 10)
		for len(got) < 3 {
			_ = s.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			n, err := s.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				return fmt.Errorf("read: %v", err)
			}
		}
		if string(got) != "xyz" {
			return fmt.Errorf("read %q, want xyz", got)
		}
		return nil
	})
	f := binaryFrame([]byte("xyz")).bytes()
	for i := range f {
		c.sendRaw(f[i : i+1])
		time.Sleep(30 * time.Millisecond)
	}
	if err := waitResult(t, result); err != nil {
		t.Fatal(err)
	}
}

func TestWriteDeadlineExpiresWhenClientDoesNotRead(t *testing.T) {
	t.Parallel()
	_, result := streamUnderTest(t, &mqttws.Handler{CloseTimeout: 100 * time.Millisecond}, func(s *mqttws.Stream) error {
		_ = s.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		chunk := make([]byte, 64<<10)
		for range 10_000 {
			if _, err := s.Write(chunk); err != nil {
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					return fmt.Errorf("write: %v, want os.ErrDeadlineExceeded", err)
				}
				if _, err := s.Write([]byte("x")); err == nil {
					return errors.New("write after a failed write succeeded")
				}
				return nil
			}
		}
		return errors.New("640 MB written to a client that reads nothing")
	})
	if err := waitResult(t, result); err != nil {
		t.Fatal(err)
	}
}

func TestCloseTwiceIsHarmlessAndWriteAfterCloseFails(t *testing.T) {
	t.Parallel()
	c, result := streamUnderTest(t, &mqttws.Handler{}, func(s *mqttws.Stream) error {
		if err := s.Close(); err != nil {
			return err
		}
		if err := s.Close(); err != nil {
			return fmt.Errorf("second Close: %v", err)
		}
		if _, err := s.Write([]byte("late")); !errors.Is(err, mqttws.ErrStreamClosed) {
			return fmt.Errorf("write after Close: %v, want ErrStreamClosed", err)
		}
		return nil
	})
	h, p, err := c.readFrame()
	if err != nil || h.OpCode != ws.OpClose {
		t.Fatalf("got %v %v, want a close frame", h.OpCode, err)
	}
	if code, _ := ws.ParseCloseFrameData(p); code != 1000 {
		t.Fatalf("close code %d, want 1000", code)
	}
	c.send(frame{op: ws.OpClose, payload: p})
	c.expectEOF()
	if err := waitResult(t, result); err != nil {
		t.Fatal(err)
	}
}

func TestCloseWaitsForTheClientsReplyOnlyUpToCloseTimeout(t *testing.T) {
	t.Parallel()
	c, result := streamUnderTest(t, &mqttws.Handler{CloseTimeout: 200 * time.Millisecond}, func(s *mqttws.Stream) error {
		start := time.Now()
		_ = s.Close()
		if d := time.Since(start); d > 2*time.Second {
			return fmt.Errorf("Close took %v with CloseTimeout 200ms", d)
		}
		return nil
	})
	c.expectClose(mqttws.CloseNormal)
	if err := waitResult(t, result); err != nil {
		t.Fatal(err)
	}
}

func TestReadAfterClientCloseReturnsEOF(t *testing.T) {
	t.Parallel()
	c, result := streamUnderTest(t, &mqttws.Handler{}, func(s *mqttws.Stream) error {
		buf := make([]byte, 10)
		for range 2 {
			if n, err := s.Read(buf); n != 0 || err != io.EOF {
				return fmt.Errorf("read after the client's close: %d %v, want io.EOF", n, err)
			}
		}
		return nil
	})
	c.send(frame{op: ws.OpClose, payload: closeBody(1001, "")})
	c.expectClose(1001)
	if err := waitResult(t, result); err != nil {
		t.Fatal(err)
	}
}

func TestTCPDropMidFrameReturnsUnexpectedEOF(t *testing.T) {
	t.Parallel()
	c, result := streamUnderTest(t, &mqttws.Handler{}, func(s *mqttws.Stream) error {
		_, err := io.ReadAll(s)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("read: %v, want io.ErrUnexpectedEOF", err)
		}
		return nil
	})
	f := binaryFrame(make([]byte, 1000)).bytes()
	c.sendRaw(f[:500])
	_ = c.conn.Close()
	if err := waitResult(t, result); err != nil {
		t.Fatal(err)
	}
}

func TestBackendResultChoosesCloseCode(t *testing.T) {
	cases := []struct {
		name string
		err  error
		code mqttws.CloseCode
	}{
		{
			name: "NilClosesWith1000",
			err:  nil,
			code: mqttws.CloseNormal,
		},
		{
			name: "ErrorClosesWith1011",
			err:  errors.New("broker exploded"),
			code: mqttws.CloseInternalError,
		},
		{
			name: "WrappedCloseErrorGivesItsCode",
			err:  fmt.Errorf("dial: %w", &mqttws.CloseError{Code: mqttws.CloseTryAgainLater, Reason: "later"}),
			code: mqttws.CloseTryAgainLater,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, _ := streamUnderTest(t, &mqttws.Handler{}, func(*mqttws.Stream) error { return tc.err })
			c.expectClose(tc.code)
		})
	}
	t.Run("PanicClosesWith1011", func(t *testing.T) {
		t.Parallel()
		h := &mqttws.Handler{Backend: mqttws.BackendFunc(func(context.Context, net.Conn) error { panic("boom") })}
		h.Logger = discardLogger()
		dial(t, serve(t, h)).expectClose(mqttws.CloseInternalError)
	})
}

func TestBackendContextOutlivesTheRequestAndEndsWithTheConnection(t *testing.T) {
	t.Parallel()
	ended := make(chan error, 1)
	h := &mqttws.Handler{Backend: mqttws.BackendFunc(func(ctx context.Context, c net.Conn) error {
		// net/http cancels the request context when ServeHTTP returns; the
		// backend's must still be alive.
		time.Sleep(50 * time.Millisecond)
		if ctx.Err() != nil {
			ended <- fmt.Errorf("context ended before the connection: %v", ctx.Err())
			return nil
		}
		_, _ = io.Copy(io.Discard, c)
		select {
		case <-ctx.Done():
			ended <- nil
		case <-time.After(testTimeout):
			ended <- errors.New("context still alive after the connection ended")
		}
		return nil
	})}
	c := dial(t, serve(t, h))
	time.Sleep(100 * time.Millisecond)
	c.send(frame{op: ws.OpClose, payload: closeBody(1000, "")})
	if err := waitResult(t, ended); err != nil {
		t.Fatal(err)
	}
}

func TestAddresses(t *testing.T) {
	t.Parallel()
	c, result := streamUnderTest(t, &mqttws.Handler{}, func(s *mqttws.Stream) error {
		_, _ = s.Write([]byte(s.LocalAddr().String() + " " + s.RemoteAddr().String() + " " + s.Subprotocol()))
		return nil
	})
	want := c.conn.RemoteAddr().String() + " " + c.conn.LocalAddr().String() + " mqtt"
	if got := string(c.readData(len(want))); got != want {
		t.Fatalf("server saw %q, want %q", got, want)
	}
	if err := waitResult(t, result); err != nil {
		t.Fatal(err)
	}
}

func TestServerPingsAnIdleConnection(t *testing.T) {
	t.Parallel()
	c := dial(t, serve(t, &mqttws.Handler{
		Backend:          newRecorder(),
		PingInterval:     50 * time.Millisecond,
		FirstDataTimeout: -1,
	}))
	for i := range 3 {
		h, p, err := c.readFrame()
		if err != nil || h.OpCode != ws.OpPing {
			t.Fatalf("frame %d: got %v %v, want a ping", i, h.OpCode, err)
		}
		c.send(frame{op: ws.OpPong, payload: p})
	}
}

func TestSilentClientIsDroppedAfterPongTimeout(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	h := &mqttws.Handler{
		Backend:          rec,
		PingInterval:     50 * time.Millisecond,
		PongTimeout:      100 * time.Millisecond,
		FirstDataTimeout: -1,
		Logger:           discardLogger(),
	}
	c := dial(t, serve(t, h))
	start := time.Now()
	h2, _, err := c.readFrame()
	if err != nil || h2.OpCode != ws.OpPing {
		t.Fatalf("got %v %v, want a ping", h2.OpCode, err)
	}
	// No pong: the server drops TCP without a close handshake.
	c.expectEOF()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("dropped after %v", d)
	}
	if _, err := rec.wait(t); err == nil {
		t.Fatal("backend read no error from a dropped connection")
	}
}

func TestClientSendingDataNeedsNoPong(t *testing.T) {
	t.Parallel()
	const interval = 250 * time.Millisecond
	rec := newRecorder()
	c := dial(t, serve(t, &mqttws.Handler{
		Backend:      rec,
		PingInterval: interval,
		PongTimeout:  interval,
	}))
	// A client silent for PingInterval+PongTimeout is dropped; this one
	// answers no ping but sends a frame every 10ms for three times that.
	// The margin is for a loaded machine, where a sleeping goroutine may
	// wake 100ms late or more: with timeouts of 30ms, then 100ms, this
	// failed a few times in a hundred runs of the package under load.
	sent := 0
	for start := time.Now(); time.Since(start) < 6*interval; sent++ {
		c.send(binaryFrame([]byte("x")))
		time.Sleep(10 * time.Millisecond)
	}
	c.send(frame{op: ws.OpClose, payload: closeBody(1000, "")})
	if got, _ := rec.wait(t); string(got) != strings.Repeat("x", sent) {
		t.Fatalf("backend read %q, want %d bytes", got, sent)
	}
}

func TestNoDataAfterUpgradeClosesWith1008(t *testing.T) {
	t.Parallel()
	c := dial(t, serve(t, &mqttws.Handler{
		Backend:          newRecorder(),
		FirstDataTimeout: 100 * time.Millisecond,
		Logger:           discardLogger(),
	}))
	// Pings are not data.
	c.send(frame{op: ws.OpPing})
	if reason := c.expectClose(mqttws.ClosePolicyViolation); !strings.Contains(reason, "no data") {
		t.Fatalf("close reason %q", reason)
	}
}

func TestWriteTimeoutBoundsEachWrite(t *testing.T) {
	t.Parallel()
	_, result := streamUnderTest(t, &mqttws.Handler{WriteTimeout: 200 * time.Millisecond, CloseTimeout: 100 * time.Millisecond}, func(s *mqttws.Stream) error {
		chunk := make([]byte, 64<<10)
		for range 10_000 {
			if _, err := s.Write(chunk); err != nil {
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					return fmt.Errorf("write: %v, want os.ErrDeadlineExceeded", err)
				}
				return nil
			}
		}
		return errors.New("640 MB written to a client that reads nothing")
	})
	if err := waitResult(t, result); err != nil {
		t.Fatal(err)
	}
}

func TestShutdownClosesWith1001AndRefusesNewUpgrades(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	h := &mqttws.Handler{Backend: rec}
	url := serve(t, h)
	c := dial(t, url)
	c.send(binaryFrame([]byte("hello")))
	// The client may see the 101 before the handler tracks the stream.
	waitActive(t, h, 1)
	done := make(chan error, 1)
	go func() { done <- h.Shutdown(context.Background()) }()
	h2, p, err := c.readFrame()
	if err != nil || h2.OpCode != ws.OpClose {
		t.Fatalf("got %v %v, want a close frame", h2.OpCode, err)
	}
	if code, _ := ws.ParseCloseFrameData(p); code != 1001 {
		t.Fatalf("close code %d, want 1001", code)
	}
	c.send(frame{op: ws.OpClose, payload: p})
	c.expectEOF()
	if err := waitResult(t, done); err != nil {
		t.Fatal(err)
	}
	if got, _ := rec.wait(t); string(got) != "hello" {
		t.Fatalf("backend read %q before shutdown, want hello", got)
	}
	if _, _, _, err := (&ws.Dialer{Protocols: []string{"mqtt"}}).Dial(context.Background(), url); err == nil || !bytes.Contains([]byte(err.Error()), []byte("503")) {
		t.Fatalf("dial after Shutdown: %v, want 503", err)
	}
	if n := h.Stats().Active; n != 0 {
		t.Fatalf("%d active streams after Shutdown", n)
	}
}

func TestShutdownForceClosesWhenContextEnds(t *testing.T) {
	t.Parallel()
	h := &mqttws.Handler{Backend: newRecorder(), CloseTimeout: time.Minute}
	dial(t, serve(t, h))
	// The client may see the 101 before the handler tracks the stream; a
	// Shutdown in between finds nothing to close and returns nil at once.
	waitActive(t, h, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	// The client never answers the close frame: only the context ends it.
	start := time.Now()
	if err := h.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Shutdown took %v", d)
	}
}

// TestCloseReplyAfterDataClosesAtOnce: when a Read under way takes data that
// crossed the server's close frame and the backend then stops reading, the
// client's close reply still ends the connection at once, not after
// CloseTimeout.
func TestCloseReplyAfterDataClosesAtOnce(t *testing.T) {
	t.Parallel()
	readerDone := make(chan struct{})
	h := &mqttws.Handler{CloseTimeout: 5 * time.Second}
	c, result := streamUnderTest(t, h, func(s *mqttws.Stream) error {
		go func() {
			defer close(readerDone)
			_, _ = s.Read(make([]byte, 10)) // takes the data, then reads no more
		}()
		time.Sleep(50 * time.Millisecond) // the Read is under way
		_ = s.Close()
		<-readerDone
		return nil
	})
	h2, p, err := c.readFrame()
	if err != nil || h2.OpCode != ws.OpClose {
		t.Fatalf("got %v %v, want a close frame", h2.OpCode, err)
	}
	start := time.Now()
	c.send(binaryFrame([]byte("crossing")), frame{op: ws.OpClose, payload: p})
	c.expectEOF()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("TCP closed %v after the client's reply", d)
	}
	if err := waitResult(t, result); err != nil {
		t.Fatal(err)
	}
}
