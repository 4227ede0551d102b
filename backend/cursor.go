package backend

// maxLengthBytes is the longest Remaining Length: a variable byte integer
// of at most 4 bytes (MQTT 3.1.1 section 2.2.3, MQTT 5 section 1.5.5).
const maxLengthBytes = 4

// watchStage is where a packetCursor is in a packet.
type watchStage uint8

const (
	watchType   watchStage = iota // waiting for a packet's first byte
	watchLength                   // reading its Remaining Length
	watchBody                     // counting its remaining bytes down
)

// cursorEvent is what packetCursor.next met.
type cursorEvent uint8

const (
	needMore  cursorEvent = iota // the bytes ran out
	gotType                      // a packet's first byte
	gotPacket                    // the end of a packet (its body went by)
	tooLong                      // a Remaining Length longer than 4 bytes
)

// packetCursor follows MQTT control packets through a byte stream: the
// first byte of each fixed header, its Remaining Length, and a count-down
// of the rest. It holds no bytes: a length the client declares is a
// counter, never an allocation. The CONNECT watch and the packet tracker
// both follow the client with one.
type packetCursor struct {
	stage     watchStage
	lengthLen int    // Remaining Length bytes read
	length    uint32 // the current packet's Remaining Length, as read so far
	remaining uint32 // bytes of the current packet still to come, in watchBody
}

// next follows p up to the next event and returns the bytes after it, the
// event, and for gotType the packet's first byte. After tooLong the cursor
// cannot go on.
func (c *packetCursor) next(p []byte) ([]byte, cursorEvent, byte) {
	for len(p) > 0 {
		switch c.stage {
		case watchType:
			c.stage, c.lengthLen, c.length, c.remaining = watchLength, 0, 0, 0
			return p[1:], gotType, p[0]
		case watchLength:
			b := p[0]
			p = p[1:]
			c.length |= uint32(b&0x7f) << (7 * c.lengthLen)
			c.lengthLen++
			switch {
			case b&0x80 == 0 && c.length == 0:
				c.stage = watchType
				return p, gotPacket, 0
			case b&0x80 == 0:
				c.stage, c.remaining = watchBody, c.length
			case c.lengthLen == maxLengthBytes:
				return p, tooLong, 0
			}
		case watchBody:
			k := c.remaining
			if uint64(len(p)) < uint64(k) {
				k = uint32(len(p))
			}
			c.remaining -= k
			p = p[k:]
			if c.remaining == 0 {
				c.stage = watchType
				return p, gotPacket, 0
			}
		}
	}
	return p, needMore, 0
}
