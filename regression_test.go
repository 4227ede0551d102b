package mqttws

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mqttws/mqttws/internal/loopback"
)

// TestShutdownHonorsContextWithStuckWriters: closing frames wait for
// writes stuck on clients that read nothing, but Shutdown returns when its
// context ends.
func TestShutdownHonorsContextWithStuckWriters(t *testing.T) {
	h := &Handler{
		CloseTimeout: time.Second,
		Logger:       slog.New(slog.DiscardHandler),
		Backend: BackendFunc(func(ctx context.Context, c net.Conn) error {
			buf := make([]byte, 1<<20)
			for {
				if _, err := c.Write(buf); err != nil {
					return err
				}
			}
		}),
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	var conns []net.Conn
	for range 3 {
		c, _, _, err := ws.Dialer{Protocols: []string{"mqtt"}}.Dial(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c) // never read
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	time.Sleep(500 * time.Millisecond) // let the writers block
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := h.Shutdown(ctx)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Shutdown with a 100ms ctx took %v and returned %v", d, err)
	}
}

// TestClearingTheDeadlineKeepsWriteTimeout: a zero (or later) deadline set
// on the stream while a Write is blocked must not lift WriteTimeout. mochi
// calls SetDeadline(time.Time{}) after each packet from a client with MQTT
// keepalive 0.
func TestClearingTheDeadlineKeepsWriteTimeout(t *testing.T) {
	server, client := loopback.Pair(t)
	_, cancel := context.WithCancel(context.Background())
	s := newStream(server, server, streamConfig{
		pool:     &bufferPool{size: DefaultReadBufferSize},
		cancel:   cancel,
		settings: &streamSettings{writeTimeout: 300 * time.Millisecond, closeTimeout: time.Second},
	})
	defer s.closeConn()
	_ = client
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 1<<20)
		for {
			if _, err := s.Write(buf); err != nil {
				done <- err
				return
			}
		}
	}()
	time.Sleep(100 * time.Millisecond) // Write is blocked, deadline armed for +300ms
	_ = s.SetDeadline(time.Time{})     // what mochi does after reading a packet (keepalive 0)
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("write failed with %v, want os.ErrDeadlineExceeded", err)
		}
	case <-time.After(3 * time.Second):
		s.closeConn()
		<-done
		t.Fatal("Write still blocked 3s after a 300ms WriteTimeout: SetDeadline(zero) cancelled it")
	}
}

// TestIdleStreamHoldsNoPooledBuffer: after a large frame read straight into
// a large caller buffer, a stream waiting for the next header holds no
// pooled buffer.
func TestIdleStreamHoldsNoPooledBuffer(t *testing.T) {
	s, client := testStream(t)
	payload := make([]byte, 10000)
	if _, err := client.Write(maskedFrame(payload)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 32<<10) // io.Copy-sized reads
	got := 0
	for got < len(payload) {
		n, err := s.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got += n
	}
	_ = s.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := s.Read(buf); !errors.Is(err, io.EOF) && err == nil {
		t.Fatal("unexpected data")
	}
	if s.fr.buf.pooled != nil {
		t.Fatalf("idle stream (blocked/timed out waiting for the next header) holds a pooled %d-byte buffer; more=%v", len(*s.fr.buf.pooled), s.fr.buf.more)
	}
}
