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

	cur     packetCursor
	stopped bool // after a packet the broker must refuse
}

// feed follows p, the next bytes from the client.
func (t *packetTracker) feed(p []byte) {
	for len(p) > 0 && !t.stopped {
		var ev cursorEvent
		var first byte
		p, ev, first = t.cur.next(p)
		switch {
		case ev == gotType && first>>4 == 0, ev == tooLong:
			t.asked.Store(true)
			t.stopped = true
		case ev == gotType && first>>4 == disconnectType:
			t.asked.Store(true)
		}
	}
}
