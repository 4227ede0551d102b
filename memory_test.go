package mqttws

import (
	"testing"
	"time"
	"unsafe"
)

// Every idle connection holds its Stream, so its size class is memory per
// connection (issue 12's goal for idle connections). The runtime prefixes
// an object over 512 bytes that holds pointers with an 8-byte header, so a
// Stream of 632 bytes takes 640, and one byte more takes 704.
func TestStreamFitsItsSizeClass(t *testing.T) {
	const limit = 640 - 8
	if size := unsafe.Sizeof(Stream{}); size > limit {
		t.Fatalf("Stream is %d bytes, over %d: every idle connection would cost a larger size class (640 -> 704 bytes); keep rarely used state out of line (see closeLog, frameVector, frameReader.control) and the Handler's settings in streamSettings", size, limit)
	}
}

// A Handler's streams share one copy of its settings while its fields stay
// as they are, and new streams get a new copy once a field changes.
func TestStreamsShareTheHandlersSettings(t *testing.T) {
	h := &Handler{PingInterval: time.Minute}
	first := h.streamSettings()
	if again := h.streamSettings(); again != first {
		t.Fatal("a second stream got a copy of its own of unchanged settings")
	}
	if first.pingInterval != time.Minute || first.writeTimeout != DefaultWriteTimeout || first.clock != &h.clock {
		t.Fatalf("settings %+v, want PingInterval 1m, the default WriteTimeout and the Handler's clock", *first)
	}
	h.PingInterval = time.Second
	changed := h.streamSettings()
	if changed == first || changed.pingInterval != time.Second {
		t.Fatalf("after PingInterval changed: %+v (the same copy: %v)", *changed, changed == first)
	}
	if first.pingInterval != time.Minute {
		t.Fatal("the copy streams hold changed under them")
	}
}
