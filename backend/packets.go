package backend

import "sync/atomic"

// disconnectType is the packet type of DISCONNECT.
const disconnectType = 14

// packetTracker follows the client's packets after its CONNECT through
// their fixed headers, counting bodies down, so that the relay knows
// whether the client asked the broker to close: by a DISCONNECT, or by a
// packet the broker must refuse (reserved type 0, or a Remaining Length
// longer than 4 bytes), after which it stops following. Like connectWatch,
// it holds no bytes.
type packetTracker struct {
	asked atomic.Bool // read by the broker's side of the relay

	stage     watchStage // watchDone: stopped
	lengthLen int
	remaining uint32
}

// feed follows p, the next bytes from the client.
func (t *packetTracker) feed(p []byte) {
	for len(p) > 0 && t.stage != watchDone {
		switch t.stage {
		case watchType:
			switch p[0] >> 4 {
			case 0:
				t.asked.Store(true)
				t.stage = watchDone
				return
			case disconnectType:
				t.asked.Store(true)
			}
			t.stage, t.lengthLen, t.remaining = watchLength, 0, 0
			p = p[1:]
		case watchLength:
			b := p[0]
			p = p[1:]
			t.remaining |= uint32(b&0x7f) << (7 * t.lengthLen)
			t.lengthLen++
			switch {
			case b&0x80 == 0 && t.remaining == 0:
				t.stage = watchType
			case b&0x80 == 0:
				t.stage = watchBody
			case t.lengthLen == maxLengthBytes:
				t.asked.Store(true)
				t.stage = watchDone
			}
		case watchBody:
			k := t.remaining
			if uint64(len(p)) < uint64(k) {
				k = uint32(len(p))
			}
			t.remaining -= k
			p = p[k:]
			if t.remaining == 0 {
				t.stage = watchType
			}
		}
	}
}
