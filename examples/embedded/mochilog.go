package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqttws/mqttws"
)

// mochi's messages (mochi-mqtt/server v2.7.9, server.go) that
// mochiLogHandler rewrites.
const (
	// errorProcessingPacket comes with the whole packet, payload included,
	// printed byte by byte: for each in-flight QoS 1 or 2 PUBLISH whose
	// client was closed at shutdown (1.8 MB of logs for 500 clients), and
	// for whatever a client sends that mochi refuses.
	errorProcessingPacket = "error processing packet"
	// clientStoreQuotaReached and packetIDsExhausted come once per message
	// dropped for a client that does not acknowledge: as many lines as a
	// publisher sends messages.
	clientStoreQuotaReached = "client store quota reached"
	packetIDsExhausted      = "packet ids exhausted"
)

// quotaLogInterval spaces the lines about messages dropped for a client.
const quotaLogInterval = 10 * time.Second

// mochiLogHandler is the slog.Handler of the broker's logger. It replaces
// the packet in "error processing packet" with its type and size, and drops
// that record to debug level when its error only says the connection was
// closed; it lets through at most one line per 10 s about messages dropped
// for clients over their quota, with the count of those left out. Every
// other record, errors included, passes unchanged.
type mochiLogHandler struct {
	slog.Handler
	quota *quotaLog // shared by the handlers WithAttrs and WithGroup derive
}

// quotaLog counts the lines about dropped messages left out.
type quotaLog struct {
	mu      sync.Mutex
	last    time.Time
	skipped int
}

func newMochiLogHandler(h slog.Handler) mochiLogHandler {
	return mochiLogHandler{Handler: h, quota: &quotaLog{}}
}

func (h mochiLogHandler) Handle(ctx context.Context, r slog.Record) error {
	switch r.Message {
	case errorProcessingPacket:
		r = withoutPacket(r)
		if !h.Handler.Enabled(ctx, r.Level) {
			return nil
		}
	case clientStoreQuotaReached, packetIDsExhausted:
		skipped, ok := h.quota.admit(r.Time)
		if !ok {
			return nil
		}
		if skipped > 0 {
			r = r.Clone()
			r.AddAttrs(slog.Int("similar_lines_left_out", skipped))
		}
	}
	return h.Handler.Handle(ctx, r)
}

// admit reports whether a line about a dropped message at t goes out, and
// how many were left out before it.
func (q *quotaLog) admit(t time.Time) (skipped int, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if t.Sub(q.last) < quotaLogInterval {
		q.skipped++
		return 0, false
	}
	skipped, q.skipped, q.last = q.skipped, 0, t
	return skipped, true
}

// withoutPacket returns r with its packet replaced by the packet's type and
// size, at debug level when its error only says the connection was closed.
func withoutPacket(r slog.Record) slog.Record {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		switch v := a.Value.Any().(type) {
		case packets.Packet:
			out.AddAttrs(
				slog.String("packet", packets.PacketNames[v.FixedHeader.Type]),
				slog.Int("remaining_length", v.FixedHeader.Remaining),
			)
			return true
		case error:
			if connectionClosed(v) {
				out.Level = slog.LevelDebug
			}
		}
		out.AddAttrs(a)
		return true
	})
	return out
}

func (h mochiLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return mochiLogHandler{Handler: h.Handler.WithAttrs(attrs), quota: h.quota}
}

func (h mochiLogHandler) WithGroup(name string) slog.Handler {
	return mochiLogHandler{Handler: h.Handler.WithGroup(name), quota: h.quota}
}

// connectionClosed reports whether err only says that the client's
// connection was closed, by either side.
func connectionClosed(err error) bool {
	for _, closed := range []error{mqttws.ErrStreamClosed, mqtt.ErrConnectionClosed, net.ErrClosed, io.EOF, io.ErrClosedPipe, syscall.ECONNRESET, syscall.EPIPE} {
		if errors.Is(err, closed) {
			return true
		}
	}
	return false
}
