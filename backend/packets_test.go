package backend

import "testing"

func TestPacketTrackerTellsWhetherTheClientAskedTheBrokerToClose(t *testing.T) {
	publish := []byte{0x30, 0x05, 0x00, 0x01, 'a', 'x', 'y'}
	long := append([]byte{0x30, 0x80, 0x01, 0x00, 0x01, 'a'}, make([]byte, 125)...) // Remaining Length 128
	tests := []struct {
		name  string
		bytes []byte
		asked bool
	}{
		{
			name:  "PUBLISH",
			bytes: publish,
		},
		{
			name:  "PINGREQ, then a PUBLISH whose body holds DISCONNECT bytes",
			bytes: append([]byte{0xc0, 0x00, 0x30, 0x04, 0x00, 0x02}, 0xe0, 0x00),
		},
		{
			name:  "a PUBLISH with a 2-byte Remaining Length",
			bytes: long,
		},
		{
			name:  "PUBLISH, then DISCONNECT",
			bytes: append(append([]byte{}, publish...), 0xe0, 0x00),
			asked: true,
		},
		{
			name:  "a long PUBLISH, then DISCONNECT",
			bytes: append(append([]byte{}, long...), 0xe0, 0x00),
			asked: true,
		},
		{
			name:  "a packet of reserved type 0",
			bytes: []byte{0x00, 0x00},
			asked: true,
		},
		{
			name:  "a Remaining Length longer than 4 bytes",
			bytes: []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01},
			asked: true,
		},
	}
	for _, tt := range tests {
		for size := 1; size <= len(tt.bytes); size++ {
			var tr packetTracker
			for p := tt.bytes; len(p) > 0; {
				n := min(size, len(p))
				tr.feed(p[:n])
				p = p[n:]
			}
			if got := tr.asked.Load(); got != tt.asked {
				t.Errorf("%s, in %d-byte chunks: asked = %v, want %v", tt.name, size, got, tt.asked)
			}
		}
	}
}

// FuzzPacketTracker feeds the tracker arbitrary client bytes, whole and in
// chunks: it never panics, and how the bytes are split never changes what
// it concludes.
func FuzzPacketTracker(f *testing.F) {
	f.Add([]byte{0x30, 0x05, 0x00, 0x01, 'a', 'x', 'y', 0xe0, 0x00}, uint8(1))
	f.Add([]byte{0xc0, 0x00, 0x30, 0x80, 0x01}, uint8(2))
	f.Add([]byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}, uint8(3))
	f.Add([]byte{0x00}, uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		var whole, split packetTracker
		whole.feed(data)
		size := int(chunk%16) + 1
		for p := data; len(p) > 0; {
			n := min(size, len(p))
			split.feed(p[:n])
			p = p[n:]
		}
		if whole.asked.Load() != split.asked.Load() || whole.stopped != split.stopped || whole.cur != split.cur {
			t.Fatalf("whole: asked %v, stopped %v, at %+v; in %d-byte chunks: asked %v, stopped %v, at %+v",
				whole.asked.Load(), whole.stopped, whole.cur, size, split.asked.Load(), split.stopped, split.cur)
		}
	})
}
