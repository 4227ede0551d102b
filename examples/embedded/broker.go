package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/mqttws/mqttws/examples/internal/options"
)

// DefaultMaxMessage is the default of -max-message: 128 KiB, AWS IoT
// Core's own limit, plenty for a chat page and most MQTT traffic. A client
// that does not read or acknowledge pins up to 128 times as much (16 MiB):
// five such subscribers of messages as large as allowed took the process to
// 846 MB with a limit of 1 MiB, 151 MB with this one.
const DefaultMaxMessage = 128 << 10

// mochi copies each message for each subscriber, and its bounds on what it
// keeps for one client count packets, not bytes, 8,192 of each kind by
// default: with 64 KiB messages, five subscribers that did not read took
// the process to 5.3 GB in 12 s, and five that read QoS 1 messages and
// never acknowledged them, to 5.6 GB. With these, one client pins at most 128 packets of at most
// -max-message bytes (16 MiB at the default).
const (
	// maxWritesPending is the count of packets mochi queues for one
	// client's writer before it drops more for that client. A subscriber
	// that reads keeps the queue near empty; one that does not blocks the
	// writer until the handler's WriteTimeout (30 s) closes it.
	maxWritesPending = 64
	// maxInflight is the count of QoS 1 and 2 messages mochi keeps for one
	// client until it acknowledges them (or, for a disconnected session,
	// until it comes back) before it drops more. mosquitto's own default
	// window is 20.
	maxInflight = 64
)

// brokerOptions returns the options of the in-process mochi broker.
func brokerOptions(maxMessage int) *mqtt.Options {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumClientWritesPending = maxWritesPending
	caps.MaximumInflight = maxInflight
	caps.MaximumPacketSize = uint32(maxMessage) // checked to fit by checkMaxMessage
	return &mqtt.Options{
		Capabilities: caps,
		// mochi logs each client at info level: keep its warnings only, so
		// that the line with the URL stays readable.
		Logger: slog.New(newMochiLogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))).With("component", "mochi"),
	}
}

// checkMaxMessage reports whether n fits -max-message: at least a small
// MQTT packet, at most MQTT's own limit (a remaining length of 256 MiB - 1,
// plus the fixed header).
func checkMaxMessage(n int) error {
	const mqttMax = 1<<28 - 1 + 5
	if n < 64 || n > mqttMax {
		return fmt.Errorf("-max-message %d: want 64 to %d bytes", n, mqttMax)
	}
	return nil
}

// servingHook follows mochi's life for the readiness check: ready from the
// broker's start (Server.Serve) to its stop (Server.Close).
type servingHook struct {
	mqtt.HookBase
	serving atomic.Bool
}

func (h *servingHook) ID() string { return "mqttws-serving" }

func (h *servingHook) Provides(b byte) bool {
	return b == mqtt.OnStarted || b == mqtt.OnStopped
}

func (h *servingHook) OnStarted() { h.serving.Store(true) }
func (h *servingHook) OnStopped() { h.serving.Store(false) }

// ready is options.App.Readiness: the broker serves.
func (h *servingHook) ready(context.Context) error {
	if !h.serving.Load() {
		return &options.Unready{Reason: "the broker is not serving"}
	}
	return nil
}
