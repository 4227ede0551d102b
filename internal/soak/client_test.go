package soak

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/mqttws/mqttws/internal/testbroker"
)

// mqttClient is a minimal MQTT 3.1.1 client over a raw WebSocket, cheap
// enough to run ten thousand of in one process.
type mqttClient struct {
	conn net.Conn
	in   bytes.Buffer // stream bytes received, not yet parsed
}

func dialMQTT(ctx context.Context, url, clientID string) (*mqttClient, error) {
	d := ws.Dialer{Protocols: []string{"mqtt"}}
	conn, br, _, err := d.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	c := &mqttClient{conn: conn}
	if br != nil {
		_, _ = io.Copy(&c.in, br) // what the server sent with its handshake
		ws.PutReader(br)
	}
	if err := c.write(testbroker.ConnectPacket(clientID, 60)); err != nil {
		conn.Close()
		return nil, err
	}
	p, err := c.readPacket()
	if err != nil || !bytes.Equal(p, testbroker.ConnackAccepted) {
		conn.Close()
		return nil, fmt.Errorf("CONNACK %x: %v", p, err)
	}
	return c, nil
}

func (c *mqttClient) write(packet []byte) error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(time.Minute))
	return wsutil.WriteClientBinary(c.conn, packet)
}

// subscribe subscribes to topic at QoS 0 and waits for the SUBACK.
func (c *mqttClient) subscribe(topic string) error {
	body := []byte{0, 1, byte(len(topic) >> 8), byte(len(topic))}
	body = append(append(body, topic...), 0)
	pkt := append([]byte{0x82, byte(len(body))}, body...)
	if err := c.write(pkt); err != nil {
		return err
	}
	p, err := c.readPacket()
	if err != nil || len(p) < 1 || p[0] != 0x90 || p[len(p)-1] != 0 {
		return fmt.Errorf("SUBACK %x: %v", p, err)
	}
	return nil
}

// readPublish reads the next packet, which must be a QoS 0 PUBLISH, and
// returns its payload.
func (c *mqttClient) readPublish(topic string) ([]byte, error) {
	p, err := c.readPacket()
	if err != nil {
		return nil, err
	}
	i := 1
	for p[i]&0x80 != 0 {
		i++
	}
	i++
	if p[0]&0xf0 != 0x30 || len(p) < i+2+len(topic) || string(p[i+2:i+2+len(topic)]) != topic {
		return nil, fmt.Errorf("want a PUBLISH to %s, got %x", topic, p)
	}
	return p[i+2+len(topic):], nil
}

// readPacket returns the next whole MQTT packet, whatever the framing.
func (c *mqttClient) readPacket() ([]byte, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(time.Minute))
	for {
		if n, ok := packetLength(c.in.Bytes()); ok {
			return bytes.Clone(c.in.Next(n)), nil
		}
		data, op, err := wsutil.ReadServerData(c.conn)
		if err != nil {
			return nil, err
		}
		if op != ws.OpBinary {
			return nil, errors.New("server sent a text frame")
		}
		c.in.Write(data)
	}
}

// packetLength returns the length of the whole packet at the start of b.
func packetLength(b []byte) (int, bool) {
	n, mult := 0, 1
	for i := 1; i < len(b) && i <= 4; i++ {
		n += int(b[i]&0x7f) * mult
		if b[i]&0x80 == 0 {
			total := 1 + i + n
			return total, len(b) >= total
		}
		mult *= 128
	}
	return 0, false
}

func (c *mqttClient) close() {
	_ = c.write(testbroker.Disconnect)
	_ = c.conn.Close()
}
