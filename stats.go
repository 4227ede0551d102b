package mqttws

import (
	"maps"
	"time"
)

// Stats is a snapshot of a Handler's counters since it started serving.
// Bytes are MQTT bytes (frame payloads, inflated where compressed); frames
// count data and control frames alike.
type Stats struct {
	Active   int    // connections being served
	Accepted uint64 // connections upgraded
	// Refused counts refused requests by reason: "not_websocket", "method",
	// "bad_handshake", "version", "http_version", "subprotocol", "host",
	// "origin", "unauthorized", "max_connections",
	// "max_connections_per_addr", "shutting_down", "no_backend",
	// "cannot_hijack", "bad_compression_level", "bad_compression_history",
	// "upgrade_failed".
	Refused map[string]uint64
	// BytesIn and FramesIn of a live connection may trail what its Read
	// returned by one read buffer of frames: they are brought up to date
	// whenever the stream waits for the client, and are exact once it ended.
	BytesIn       uint64 // from clients
	BytesOut      uint64 // to clients
	FramesIn      uint64
	FramesOut     uint64
	CloseSent     map[CloseCode]uint64 // close frames sent, by code (0: no code)
	CloseReceived map[CloseCode]uint64 // close frames received, by code (0: no code)

	// Compressed counts the connections, of Accepted, that negotiated
	// permessage-deflate (Handler.Compression).
	Compressed uint64
	// CompressedBytesIn and CompressedBytesOut count the MQTT bytes, of
	// BytesIn and BytesOut, that traveled in compressed messages: before
	// compression. CompressedWireBytesIn and CompressedWireBytesOut count
	// the frame payload bytes those messages took on the wire: after
	// compression. CompressedBytesOut / CompressedWireBytesOut is the
	// compression ratio of what clients received; the bytes on the wire in
	// all are BytesOut - CompressedBytesOut + CompressedWireBytesOut.
	CompressedBytesIn      uint64
	CompressedWireBytesIn  uint64
	CompressedBytesOut     uint64
	CompressedWireBytesOut uint64
	// CompressedMessagesIn and CompressedMessagesOut count the messages
	// that traveled compressed (a message is a Write on the way out).
	CompressedMessagesIn  uint64
	CompressedMessagesOut uint64
}

// totals holds the counters of ended connections and of refusals; the
// Handler's mu guards it.
type totals struct {
	accepted      uint64
	refusedBy     map[string]uint64
	bytesIn       uint64
	bytesOut      uint64
	framesIn      uint64
	framesOut     uint64
	closeSent     map[CloseCode]uint64
	closeReceived map[CloseCode]uint64
	compressed    uint64
	deflate       deflateTotals
}

// deflateTotals are the permessage-deflate counters of Stats.
type deflateTotals struct {
	bytesIn, wireIn, messagesIn    uint64
	bytesOut, wireOut, messagesOut uint64
}

// add counts the compressed traffic of d.
func (t *deflateTotals) add(d *streamDeflate) {
	t.bytesIn += uint64(d.bytesIn.Load())
	t.wireIn += uint64(d.wireIn.Load())
	t.messagesIn += uint64(d.messagesIn.Load())
	t.bytesOut += uint64(d.bytesOut.Load())
	t.wireOut += uint64(d.wireOut.Load())
	t.messagesOut += uint64(d.messagesOut.Load())
}

// refused counts a refusal; it takes no lock, so the caller must not hold
// the Handler's mu (see Handler.countRefusal).
func (t *totals) refused(kind string) {
	if t.refusedBy == nil {
		t.refusedBy = make(map[string]uint64)
	}
	t.refusedBy[kind]++
}

// add counts an ended stream.
func (t *totals) add(s *Stream) {
	t.bytesIn += uint64(s.bytesIn.Load())
	t.bytesOut += uint64(s.bytesOut.Load())
	t.framesIn += uint64(s.framesIn.Load())
	t.framesOut += uint64(s.framesOut.Load())
	if s.deflate != nil {
		t.deflate.add(s.deflate)
	}
	sent, rcvd := s.closeCodes()
	if sent.ok {
		t.closeSent = increment(t.closeSent, sent.code)
	}
	if rcvd.ok {
		t.closeReceived = increment(t.closeReceived, rcvd.code)
	}
}

func increment(m map[CloseCode]uint64, code CloseCode) map[CloseCode]uint64 {
	if m == nil {
		m = make(map[CloseCode]uint64)
	}
	m[code]++
	return m
}

// Stats returns a snapshot of the handler's counters, live connections
// included.
func (h *Handler) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.stats
	st := Stats{
		Active:        len(h.streams),
		Accepted:      t.accepted,
		Refused:       maps.Clone(t.refusedBy),
		BytesIn:       t.bytesIn,
		BytesOut:      t.bytesOut,
		FramesIn:      t.framesIn,
		FramesOut:     t.framesOut,
		CloseSent:     maps.Clone(t.closeSent),
		CloseReceived: maps.Clone(t.closeReceived),
		Compressed:    t.compressed,
	}
	d := t.deflate
	for s := range h.streams {
		st.BytesIn += uint64(s.bytesIn.Load())
		st.BytesOut += uint64(s.bytesOut.Load())
		st.FramesIn += uint64(s.framesIn.Load())
		st.FramesOut += uint64(s.framesOut.Load())
		if s.deflate != nil {
			d.add(s.deflate)
		}
	}
	st.CompressedBytesIn, st.CompressedWireBytesIn, st.CompressedMessagesIn = d.bytesIn, d.wireIn, d.messagesIn
	st.CompressedBytesOut, st.CompressedWireBytesOut, st.CompressedMessagesOut = d.bytesOut, d.wireOut, d.messagesOut
	if st.Refused == nil {
		st.Refused = map[string]uint64{}
	}
	if st.CloseSent == nil {
		st.CloseSent = map[CloseCode]uint64{}
	}
	if st.CloseReceived == nil {
		st.CloseReceived = map[CloseCode]uint64{}
	}
	return st
}

// logEnd writes the line that sums up an ended connection.
func (h *Handler) logEnd(s *Stream, backendErr error) {
	sent, rcvd := s.closeCodes()
	attrs := []any{
		"remote", s.RemoteAddr().String(),
		"subprotocol", s.subprotocol,
		"http", s.httpProto(),
		"duration", time.Since(s.keepalive.traffic.base).Round(time.Millisecond),
		"bytes_in", s.bytesIn.Load(),
		"bytes_out", s.bytesOut.Load(),
		"frames_in", s.framesIn.Load(),
		"frames_out", s.framesOut.Load(),
	}
	if d := s.deflate; d != nil {
		attrs = append(attrs,
			"compressed_bytes_in", d.bytesIn.Load(),
			"compressed_wire_bytes_in", d.wireIn.Load(),
			"compressed_bytes_out", d.bytesOut.Load(),
			"compressed_wire_bytes_out", d.wireOut.Load(),
		)
	}
	if sent.ok {
		attrs = append(attrs, "close_sent", sent.code, "close_sent_reason", sent.reason)
	}
	if rcvd.ok {
		attrs = append(attrs, "close_received", rcvd.code, "close_received_reason", rcvd.reason)
	}
	if reason := s.dropped(); reason != "" {
		attrs = append(attrs, "dropped", reason)
	}
	if backendErr != nil {
		attrs = append(attrs, "backend_err", backendErr.Error())
	}
	h.logger().Info("mqttws: connection ended", attrs...)
}
