package mqttws

import (
	"testing"
	"unsafe"
)

// Every idle connection holds its Stream, so its size class is memory per
// connection (issue 12's goal for idle connections). The runtime prefixes
// an object over 512 bytes that holds pointers with an 8-byte header, so a
// Stream of 696 bytes takes 704, and one byte more takes 768.
func TestStreamFitsItsSizeClass(t *testing.T) {
	const limit = 704 - 8
	if size := unsafe.Sizeof(Stream{}); size > limit {
		t.Fatalf("Stream is %d bytes, over %d: every idle connection would cost a larger size class (704 -> 768 bytes); keep rarely used state out of line (see closeLog, frameVector, frameReader.control)", size, limit)
	}
}
