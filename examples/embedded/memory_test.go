//go:build linux

package main

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/mqttws/mqttws/internal/testbroker"
)

func TestSlowSubscribersCannotGrowTheProcess(t *testing.T) {
	const (
		subscribers = 5
		size        = DefaultMaxMessage - 16 // a PUBLISH as large as the example takes
		duration    = 5 * time.Second
		maxMessages = 200_000
		limit       = 256 << 20
	)
	tests := []struct {
		name string
		qos  byte
		// reads tells a subscriber that reads what it gets (and never
		// acknowledges it) from one that reads nothing.
		reads bool
	}{
		{
			name: "QoS 0 subscribers that do not read",
			qos:  0,
		},
		{
			name:  "QoS 1 subscribers that read and never acknowledge",
			qos:   1,
			reads: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := start(t)
			url := "ws://" + p.Addr + "/mqtt"
			before := p.Memory(t)

			subscribe := testbroker.Packet(0x82, []byte{0, 1, 0, 1, 't', tc.qos})
			for i := range subscribers {
				c := testbroker.ConnectRaw(t, url, fmt.Sprintf("slow-%d", i))
				if err := c.WriteFrame(ws.NewBinaryFrame(subscribe)); err != nil {
					t.Fatal(err)
				}
				c.ExpectData(t, []byte{0x90, 3, 0, 1, tc.qos})
				if tc.reads {
					go func() { _, _ = io.Copy(io.Discard, c.Conn) }()
				}
			}

			// One publisher of messages as large as allowed, as fast as it
			// can: one frame, masked once, sent again and again (QoS 1 with
			// packet id 1 each time, acknowledged at once).
			pub := testbroker.ConnectRaw(t, url, "loud")
			go func() { _, _ = io.Copy(io.Discard, pub.Conn) }() // PUBACKs
			var frame bytes.Buffer
			publish := testbroker.PublishPacket("t", make([]byte, size))
			if tc.qos == 1 {
				publish = testbroker.Packet(0x32, append([]byte{0, 1, 't', 0, 1}, make([]byte, size)...))
			}
			if err := ws.WriteFrame(&frame, ws.MaskFrameWith(ws.NewBinaryFrame(publish), [4]byte{1, 2, 3, 4})); err != nil {
				t.Fatal(err)
			}

			var peak int64
			var mu sync.Mutex
			done := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				tick := time.NewTicker(100 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-done:
						return
					case <-tick.C:
						m, err := p.ReadMemory()
						if err != nil {
							continue // read again below
						}
						mu.Lock()
						peak = max(peak, m.RSS)
						mu.Unlock()
					}
				}
			})
			sent := 0
			end := time.Now().Add(duration)
			_ = pub.Conn.SetWriteDeadline(end.Add(5 * time.Second))
			for sent < maxMessages && time.Now().Before(end) {
				if _, err := pub.Conn.Write(frame.Bytes()); err != nil {
					t.Fatalf("publish %d: %v", sent+1, err)
				}
				sent++
			}
			close(done)
			wg.Wait()
			after := p.Memory(t)
			t.Logf("%d messages of %d KiB published in %v: RSS %d MB before, %d MB after, peak %d MB",
				sent, size>>10, duration, before.RSS>>20, after.RSS>>20, after.HWM>>20)
			if after.HWM > limit || peak > limit {
				t.Errorf("peak RSS %d MB, want under %d MB", max(after.HWM, peak)>>20, limit>>20)
			}
			// Nor the disk: messages dropped for the slow subscribers are
			// not logged one by one.
			if log := p.Stderr(); len(log) > 64<<10 {
				t.Errorf("%d bytes of log, want under 64 KiB:\n%.2000s", len(log), log)
			}
		})
	}
}
