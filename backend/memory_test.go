package backend

import (
	"testing"
	"unsafe"
)

// A parked gateway connection holds its relay state (clientSide, with the
// parked relay and both pumps in it) in one allocation, so its size class
// is memory per idle connection (issue 12's goal). Objects of up to 512
// bytes carry no allocation header: 448 bytes take 448, one byte more 480.
func TestRelayFitsItsSizeClass(t *testing.T) {
	const limit = 448
	if size := unsafe.Sizeof(clientSide{}); size > limit {
		t.Fatalf("clientSide is %d bytes, over %d: every idle gateway connection would cost the next size class (480 bytes); mind the padding around bools and atomics", size, limit)
	}
}
