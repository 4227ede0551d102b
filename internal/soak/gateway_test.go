package soak

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/backend"
	"github.com/mqttws/mqttws/internal/testbroker"
)

// gatewayClients is how many connections TestGatewayConnectionsParkAndWake
// holds: fewer under the race detector, whose memory grows with them.
func gatewayClients() int {
	if raceEnabled {
		return 300
	}
	return 1_000
}

// gatewayRounds is how many messages each client sends itself.
const gatewayRounds = 6

// TestGatewayConnectionsParkAndWake runs MQTT clients through the gateway
// (mqttws.Handler with backend.Dialer as its Backend, which on Linux parks
// an idle connection's relay in an epoll set of its own) in front of a real
// mosquitto. Each client subscribes to its own topic, then in rounds sends
// itself a numbered message after a pause drawn from 0 to 60 ms, so that
// both directions of its connection park (after 20 ms without bytes) and
// wake again, at random moments against the other connections: every
// message must come back, byte for byte, in its round. Between two rounds,
// with every connection idle, the gateway holds no goroutine per
// connection.
func TestGatewayConnectionsParkAndWake(t *testing.T) {
	broker := testbroker.Start(t, testbroker.Options{})
	h := &mqttws.Handler{Backend: backend.Dial(broker.Addr), Logger: slog.New(slog.DiscardHandler)}
	url := serveHandler(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	n := gatewayClients()
	before := runtime.NumGoroutine()
	clients := make([]*mqttClient, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range clients {
		wg.Go(func() {
			c, err := dialMQTT(ctx, url, fmt.Sprintf("gw-%d", i))
			if err == nil {
				err = c.subscribe(fmt.Sprintf("soak/gw/%d", i))
			}
			if err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
				return
			}
			clients[i] = c
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	defer func() {
		for _, c := range clients {
			c.close()
		}
	}()

	// Every connection idle for more than the linger: no relay goroutine.
	idle := waitGoroutinesAtMost(before+n/20, 5*time.Second)
	t.Logf("%d connections idle: %d goroutines (%d before they opened)", n, idle, before)
	if idle > before+n/20 {
		t.Errorf("%d goroutines with %d idle gateway connections, %d before: the relays did not park", idle, n, before)
	}

	var delivered atomic.Int64
	errs = make(chan error, n)
	for i, c := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			topic := fmt.Sprintf("soak/gw/%d", i)
			for round := range gatewayRounds {
				time.Sleep(time.Duration(rng.IntN(60)) * time.Millisecond)
				payload := fmt.Appendf(nil, "client %d round %d %s", i, round, bytes.Repeat([]byte{'x'}, rng.IntN(2000)))
				if err := c.write(testbroker.PublishPacket(topic, payload)); err != nil {
					errs <- fmt.Errorf("client %d round %d: publish: %w", i, round, err)
					return
				}
				got, err := c.readPublish(topic)
				if err != nil {
					errs <- fmt.Errorf("client %d round %d: %w", i, round, err)
					return
				}
				if !bytes.Equal(got, payload) {
					errs <- fmt.Errorf("client %d round %d: got %d bytes %.40q, want %d bytes %.40q", i, round, len(got), got, len(payload), payload)
					return
				}
				delivered.Add(1)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got, want := delivered.Load(), int64(n*gatewayRounds); got != want {
		t.Fatalf("%d messages came back, want %d", got, want)
	}
	idle = waitGoroutinesAtMost(before+n/20, 5*time.Second)
	t.Logf("after %d messages: %d goroutines", n*gatewayRounds, idle)
	if idle > before+n/20 {
		t.Errorf("%d goroutines after the rounds with %d idle gateway connections, %d before: the relays did not park again", idle, n, before)
	}
}

// waitGoroutinesAtMost waits until at most want goroutines run, or for
// bound, and returns the count last seen.
func waitGoroutinesAtMost(want int, bound time.Duration) int {
	deadline := time.Now().Add(bound)
	for {
		got := runtime.NumGoroutine()
		if got <= want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}
