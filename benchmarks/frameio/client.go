package frameio

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"time"

	"github.com/gobwas/ws"
)

// pair is one connection under test: the server's stream and the client's
// raw TCP connection.
type pair struct {
	server io.ReadWriteCloser
	client net.Conn
	stop   func()
}

// close ends the client first, so that servers waiting for a close
// handshake see the end of the connection at once, then the server.
func (p *pair) close() {
	_ = p.client.Close()
	_ = p.server.Close()
	p.stop()
}

// connect starts srv on a loopback listener and connects one client to it,
// with a WebSocket handshake (subprotocol "mqtt") when srv is framed.
func connect(srv Server) (*pair, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	streams := make(chan io.ReadWriteCloser, 1)
	stop := srv.start(ln, streams)
	client, err := dial(ln.Addr().String(), srv.Framed)
	if err != nil {
		stop()
		return nil, fmt.Errorf("frameio: %s: dial: %w", srv.Name, err)
	}
	select {
	case s := <-streams:
		return &pair{server: s, client: client, stop: stop}, nil
	case <-time.After(5 * time.Second):
		_ = client.Close()
		stop()
		return nil, fmt.Errorf("frameio: %s: %w", srv.Name, errNoStream)
	}
}

// dial opens the client's TCP connection, upgraded to a WebSocket when
// framed. The client then speaks raw bytes: pre-masked frames, or reads it
// discards.
func dial(addr string, framed bool) (net.Conn, error) {
	if !framed {
		return net.Dial("tcp", addr)
	}
	d := ws.Dialer{Protocols: []string{"mqtt"}, Timeout: 5 * time.Second}
	conn, br, _, err := d.Dial(context.Background(), "ws://"+addr+"/mqtt")
	if err != nil {
		return nil, err
	}
	if br != nil {
		// The server spoke before the client did: keep those bytes.
		return &prefixedConn{Conn: conn, r: br}, nil
	}
	return conn, nil
}

// prefixedConn reads what the handshake reader buffered, then the conn.
type prefixedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *prefixedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// clientMask is the mask of every client frame; any non-zero mask makes
// unmasking real work.
var clientMask = [4]byte{0x5a, 0x3c, 0xa5, 0xc3}

// chunkSize is the least size of one client write in read benchmarks: many
// small frames go out in one system call, so that the client is never what
// bounds the server's reads.
const chunkSize = 64 << 10

// payload returns size bytes of fixed pseudo-random data.
func payload(size int) []byte {
	r := rand.New(rand.NewPCG(uint64(size), 1))
	p := make([]byte, size)
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return p
}

// clientChunk returns what the client writes, again and again, in a read
// benchmark: whole masked binary frames carrying p when framed, or p itself,
// repeated to at least chunkSize bytes.
func clientChunk(p []byte, framed bool) []byte {
	one := p
	if framed {
		h := ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(len(p)), Masked: true, Mask: clientMask}
		frame := make([]byte, 0, ws.HeaderSize(h)+len(p))
		var hb headerBuffer
		_ = ws.WriteHeader(&hb, h)
		frame = append(frame, hb.b...)
		start := len(frame)
		frame = append(frame, p...)
		ws.Cipher(frame[start:], clientMask, 0)
		one = frame
	}
	chunk := one
	for len(chunk) < chunkSize {
		chunk = append(chunk, one...)
	}
	return chunk
}

// headerBuffer collects an encoded header.
type headerBuffer struct{ b []byte }

func (h *headerBuffer) Write(p []byte) (int, error) {
	h.b = append(h.b, p...)
	return len(p), nil
}

// writeForever writes chunk to c until the connection fails (it is closed
// when the benchmark ends).
func writeForever(c net.Conn, chunk []byte) {
	for {
		if _, err := c.Write(chunk); err != nil {
			return
		}
	}
}

// drainBufferSize is the client's read size in write benchmarks, large
// enough that the client is never what bounds the server's writes.
const drainBufferSize = 256 << 10

// drain reads and drops everything from c until it fails.
func drain(c net.Conn) {
	buf := make([]byte, drainBufferSize)
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}
