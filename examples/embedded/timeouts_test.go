package main

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqttws/mqttws/examples/internal/options"
	"github.com/mqttws/mqttws/internal/pahotest"
	"github.com/mqttws/mqttws/internal/testbroker"
)

func TestMQTTOverWebSocketOutlivesTheHTTPServerTimeouts(t *testing.T) {
	const timeout = 200 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config{path: "/mqtt", maxMessage: DefaultMaxMessage}
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

	url := "ws://" + ln.Addr().String() + "/mqtt"
	got := make(chan string, 10)
	sub := pahotest.Connect(t, url, testbroker.ClientID("sub"), nil)
	tok := sub.Subscribe("t", 1, func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) })
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	pub := pahotest.Connect(t, url, testbroker.ClientID("pub"), nil)

	time.Sleep(8 * timeout) // well past ReadTimeout, WriteTimeout and IdleTimeout
	tok = pub.Publish("t", 1, false, "after the timeouts")
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish after the HTTP server's timeouts: %v", tok.Error())
	}
	select {
	case m := <-got:
		if m != "after the timeouts" {
			t.Errorf("received %q", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the subscriber received nothing within 5s")
	}
}
