package idle

import (
	"bytes"
	"testing"
)

func TestConnectPacketIsMQTT311WithCleanSession(t *testing.T) {
	got := connectPacket("c1")
	want := []byte{
		0x10, 14, // CONNECT, remaining length
		0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, // protocol name, level 4, clean session
		Keepalive >> 8, Keepalive & 0xff,
		0, 2, 'c', '1',
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("CONNECT % x, want % x", got, want)
	}
}
