// Package idle opens many idle MQTT connections, for measuring what each
// one costs a server. Its client is as small as a client can be (a TCP or
// WebSocket connection, CONNECT, CONNACK, then nothing), so that thousands
// of them fit in the runner.
package idle

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// Keepalive is the MQTT keepalive the connections announce, in seconds:
// long enough that no client sends PINGREQ during a measurement.
const Keepalive = 600

// Conns is a set of open idle connections.
type Conns struct {
	conns []net.Conn
}

// Len returns the count of open connections.
func (c *Conns) Len() int { return len(c.conns) }

// Close closes every connection.
func (c *Conns) Close() {
	for _, conn := range c.conns {
		_ = conn.Close()
	}
	c.conns = nil
}

// sourcesFrom is the connection count past which clients spread over
// several loopback source addresses: one address to one server port has
// about 28k ephemeral ports (ip_local_port_range).
const sourcesFrom = 20000

// workers is the count of connections opened at once.
const workers = 32

// Open opens n MQTT connections to addr ("127.0.0.1:port"), over WebSocket
// at path when path is not empty, each one through CONNECT and a successful
// CONNACK. progress, when not nil, is called with the count open so far.
func Open(ctx context.Context, addr, path string, n int, progress func(int)) (*Conns, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conns := make([]net.Conn, n)
	var next, opened atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := open(ctx, addr, path, i, n > sourcesFrom)
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("idle: connection %d: %w", i, err) })
					cancel()
					return
				}
				conns[i] = c
				if k := opened.Add(1); progress != nil && k%1000 == 0 {
					progress(int(k))
				}
			}
		})
	}
	wg.Wait()
	set := &Conns{}
	for _, c := range conns {
		if c != nil {
			set.conns = append(set.conns, c)
		}
	}
	if firstErr != nil {
		set.Close()
		return nil, firstErr
	}
	return set, nil
}

// open opens connection i.
func open(ctx context.Context, addr, path string, i int, spread bool) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	d := net.Dialer{}
	if spread {
		d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%8))}
	}
	dial := func(ctx context.Context, network, address string) (net.Conn, error) {
		return d.DialContext(ctx, network, address)
	}
	var conn net.Conn
	var r io.Reader
	if path == "" {
		c, err := dial(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		conn, r = c, c
	} else {
		wd := ws.Dialer{Protocols: []string{"mqtt"}, NetDial: dial}
		c, br, _, err := wd.Dial(ctx, "ws://"+addr+path)
		if err != nil {
			return nil, err
		}
		conn, r = c, c
		if br != nil {
			r = br
		}
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if err := handshake(conn, r, path != "", fmt.Sprintf("idle-%d", i)); err != nil {
		_ = conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

// handshake sends CONNECT and reads a successful CONNACK.
func handshake(conn net.Conn, r io.Reader, framed bool, clientID string) error {
	pkt := connectPacket(clientID)
	var ack []byte
	if framed {
		if err := wsutil.WriteClientBinary(conn, pkt); err != nil {
			return err
		}
		var err error
		ack, err = wsutil.ReadServerBinary(struct {
			io.Reader
			io.Writer
		}{r, conn})
		if err != nil {
			return err
		}
	} else {
		if _, err := conn.Write(pkt); err != nil {
			return err
		}
		ack = make([]byte, 4)
		if _, err := io.ReadFull(r, ack); err != nil {
			return err
		}
	}
	if len(ack) != 4 || ack[0] != 0x20 || ack[1] != 2 {
		return fmt.Errorf("not a CONNACK: % x", ack)
	}
	if ack[3] != 0 {
		return errors.New("CONNACK refused the connection, code " + fmt.Sprint(ack[3]))
	}
	return nil
}

// connectPacket encodes an MQTT 3.1.1 CONNECT with a clean session.
func connectPacket(clientID string) []byte {
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02}
	body = binary.BigEndian.AppendUint16(body, Keepalive)
	body = binary.BigEndian.AppendUint16(body, uint16(len(clientID)))
	body = append(body, clientID...)
	// The body is under 128 bytes: a one-byte remaining length.
	return append([]byte{0x10, byte(len(body))}, body...)
}
