package interop

import (
	"fmt"

	"github.com/mqttws/mqttws/internal/testbroker"
)

// The MQTT 3.1.1 packets of the framed client, encoded by hand so that the
// test owns every byte.

var (
	pingreq    = []byte{0xc0, 0x00}
	disconnect = []byte{0xe0, 0x00}
)

// connectPacket returns a CONNECT with a clean session.
func connectPacket(clientID string, keepalive uint16) []byte {
	body := []byte{0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, byte(keepalive >> 8), byte(keepalive)}
	return testbroker.Packet(0x10, appendString(body, clientID))
}

// subscribePacket returns a SUBSCRIBE to one filter.
func subscribePacket(id uint16, filter string, qos byte) []byte {
	body := appendString([]byte{byte(id >> 8), byte(id)}, filter)
	return testbroker.Packet(0x82, append(body, qos))
}

// publishPacket returns a PUBLISH at QoS 0 (id unused) or 1.
func publishPacket(topic string, qos int, id uint16, payload []byte) []byte {
	body := appendString(nil, topic)
	if qos > 0 {
		body = append(body, byte(id>>8), byte(id))
	}
	return testbroker.Packet(0x30|byte(qos)<<1, append(body, payload...))
}

func pubackPacket(id uint16) []byte {
	return []byte{0x40, 0x02, byte(id >> 8), byte(id)}
}

func appendString(b []byte, s string) []byte {
	b = append(b, byte(len(s)>>8), byte(len(s)))
	return append(b, s...)
}

// splitPacket returns the first whole packet of b and its length, or nil
// when b does not hold one yet.
func splitPacket(b []byte) ([]byte, int) {
	length, mult := 0, 1
	for i := 1; i < len(b) && i <= 4; i++ {
		length += int(b[i]&0x7f) * mult
		if b[i]&0x80 == 0 {
			end := i + 1 + length
			if len(b) < end {
				return nil, 0
			}
			return b[:end], end
		}
		mult *= 128
	}
	return nil, 0
}

// parsePublish returns the topic, packet id (0 at QoS 0) and payload of a
// PUBLISH packet.
func parsePublish(p []byte) (topic string, id uint16, payload []byte, err error) {
	_, n := splitPacket(p)
	hdr := 1
	for p[hdr]&0x80 != 0 {
		hdr++
	}
	body := p[hdr+1 : n]
	if len(body) < 2 {
		return "", 0, nil, fmt.Errorf("PUBLISH % x: too short", p)
	}
	tl := int(body[0])<<8 | int(body[1])
	if len(body) < 2+tl {
		return "", 0, nil, fmt.Errorf("PUBLISH % x: topic longer than the packet", p)
	}
	topic, body = string(body[2:2+tl]), body[2+tl:]
	if qos := p[0] >> 1 & 3; qos > 0 {
		if len(body) < 2 {
			return "", 0, nil, fmt.Errorf("PUBLISH % x: no packet id", p)
		}
		id, body = uint16(body[0])<<8|uint16(body[1]), body[2:]
	}
	return topic, id, body, nil
}
