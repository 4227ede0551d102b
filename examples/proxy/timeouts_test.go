package main

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mqttws/mqttws/examples/internal/options"
	"github.com/mqttws/mqttws/internal/testbroker"
)

func TestWebSocketOutlivesTheHTTPServerTimeouts(t *testing.T) {
	const timeout = 200 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config{path: "/mqtt", upstreams: []string{echoServer(t)}}
	cfg.server.Timeouts = options.Timeouts{ReadHeader: timeout, Read: timeout, Write: timeout, Idle: timeout}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, ln, cfg, slog.New(slog.NewTextHandler(t.Output(), nil)), nil)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})

	c := testbroker.DialWS(t, "ws://"+ln.Addr().String()+"/mqtt")
	echo := func(msg []byte) {
		t.Helper()
		if err := c.WriteFrame(ws.NewBinaryFrame(msg)); err != nil {
			t.Fatalf("write: %v", err)
		}
		c.ExpectData(t, msg)
	}
	echo(testbroker.ConnectPacket("echoed", 60))
	time.Sleep(8 * timeout) // well past ReadTimeout, WriteTimeout and IdleTimeout
	echo(testbroker.PublishPacket("t", []byte("after the timeouts")))
}
