package soak

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/mqttws/mqttws"

	"github.com/mqttws/mqttws/internal/testbroker"
)

// TestSubscriberThatStopsReadingKeepsMemoryBounded floods a subscriber that
// reads nothing: mqttws buffers nothing for it, so the broker sees a blocked
// writer (and drops QoS 0 messages by its own policy) while the process heap
// stays flat; WriteTimeout then frees the broker's writer.
func TestSubscriberThatStopsReadingKeepsMemoryBounded(t *testing.T) {
	const (
		messages    = 10_000
		payloadSize = 16 << 10
		bound       = 64 << 10 // KiB of heap growth allowed while 160 MB go by
	)
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumClientWritesPending = 64 // the broker's own queue per client
	h := &mqttws.Handler{WriteTimeout: 3 * time.Second}
	url, broker := startBroker(t, &mqtt.Options{Capabilities: caps}, h)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sub, err := dialMQTT(ctx, url, "stuck-subscriber")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.close()
	if err := sub.subscribe("bp/flood"); err != nil {
		t.Fatal(err)
	}
	pub, err := dialMQTT(ctx, url, "fast-publisher")
	if err != nil {
		t.Fatal(err)
	}
	defer pub.close()

	baseHeap := heapKiB()
	peakHeap := baseHeap
	payload := make([]byte, payloadSize)
	deadline := time.Now().Add(30 * time.Second)
	sent := 0
	for ; sent < messages && time.Now().Before(deadline); sent++ {
		copy(payload, fmt.Sprint(sent))
		if err := pub.write(testbroker.PublishPacket("bp/flood", payload)); err != nil {
			t.Fatalf("publish %d: %v", sent, err)
		}
		if sent%500 == 0 {
			peakHeap = max(peakHeap, heapKiB())
		}
	}
	peakHeap = max(peakHeap, heapKiB())
	dropped := atomic.LoadInt64(&broker.Info.MessagesDropped)
	t.Logf("published %d messages of %d KiB to a subscriber that reads nothing: heap %d KiB before, peak %d KiB; broker dropped %d",
		sent, payloadSize>>10, baseHeap, peakHeap, dropped)
	if sent < messages/2 {
		t.Fatalf("only %d messages published in 30 s: the publisher was held back by the stuck subscriber", sent)
	}
	if peakHeap-baseHeap > bound {
		t.Fatalf("heap grew by %d KiB while flooding a stuck subscriber, bound %d KiB", peakHeap-baseHeap, bound)
	}
	if dropped == 0 {
		t.Fatalf("the broker dropped nothing: it never saw a blocked writer")
	}

	// WriteTimeout frees the broker's writer: the stuck subscriber goes.
	wait := time.Now().Add(15 * time.Second)
	for h.Stats().Active > 1 && time.Now().Before(wait) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := h.Stats().Active; n != 1 {
		t.Fatalf("%d streams active, want only the publisher's once WriteTimeout dropped the stuck subscriber", n)
	}
}
