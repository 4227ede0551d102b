package backend

import "testing"

// FuzzConnectWatch feeds the CONNECT watch arbitrary client bytes, whole and
// in chunks: it never panics, and how the bytes are split never changes
// what it concludes.
func FuzzConnectWatch(f *testing.F) {
	f.Add([]byte{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 0}, uint8(1))
	f.Add([]byte{0x10, 0xff, 0xff, 0xff, 0x7f}, uint8(2))
	f.Add([]byte{0x10, 0x80, 0x80, 0x80, 0x80, 0x01}, uint8(3))
	f.Add([]byte{0x30, 0x02, 0, 0}, uint8(1))
	f.Add([]byte{0x12, 0x00}, uint8(1))
	f.Add([]byte{0x10, 0x00}, uint8(5))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		var whole connectWatch
		wholeErr := whole.feed(data)

		var split connectWatch
		var splitErr error
		size := int(chunk%16) + 1
		for p := data; len(p) > 0 && splitErr == nil; {
			n := min(size, len(p))
			if err := split.feed(p[:n]); err != nil {
				splitErr = err
			}
			p = p[n:]
		}
		if (wholeErr == nil) != (splitErr == nil) {
			t.Fatalf("whole: %v; in %d-byte chunks: %v", wholeErr, size, splitErr)
		}
		if wholeErr == nil && (whole.connected != split.connected || whole.cur.stage != split.cur.stage || whole.cur.remaining != split.cur.remaining || whole.cur.length != split.cur.length) {
			t.Fatalf("whole ends at %+v, chunked at %+v", whole, split)
		}
		if wholeErr != nil && whole.done() {
			t.Fatal("a refused first packet counts as a whole CONNECT")
		}
	})
}
