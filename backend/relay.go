package backend

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/mqttws/mqttws"
)

// Copy buffer sizes: a relay reads into a small buffer while traffic is
// light and borrows a large one while reads fill the small one, so an idle
// connection holds 2 × 512 bytes rather than 2 × 16 KiB.
const (
	smallCopySize = 512
	largeCopySize = 16 << 10
)

// brokerLinger bounds the wait for the broker to close its side once the
// client has gone and the broker's connection was half-closed.
const brokerLinger = 5 * time.Second

// relay copies both ways between the client's stream and the broker. The
// broker closing its side ends the relay, and the client is then closed
// with 1000. The client closing its side half-closes the broker's
// connection, so that the broker sees a clean end of stream, and the relay
// waits a little for the broker to close in turn.
func (d *Dialer) relay(client, broker net.Conn) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = d.copyStream(broker, client)
		if !closeWrite(broker) {
			_ = broker.Close()
			return
		}
		_ = broker.SetReadDeadline(time.Now().Add(brokerLinger))
	}()
	brokerErr := d.copyStream(client, broker)
	_ = broker.Close()
	var result error
	code, reason := mqttws.CloseNormal, ""
	if brokerErr != nil && !errors.Is(brokerErr, net.ErrClosed) && !errors.Is(brokerErr, mqttws.ErrStreamClosed) && !isTimeout(brokerErr) {
		code, reason = mqttws.CloseInternalError, "broker connection failed"
		result = &mqttws.CloseError{Code: code, Reason: reason, Err: brokerErr}
	}
	// Closing the client ends the other copy, which is reading from it.
	if s, ok := client.(interface {
		CloseWith(mqttws.CloseCode, string) error
	}); ok {
		_ = s.CloseWith(code, reason)
	} else {
		_ = client.Close()
	}
	wg.Wait()
	return result
}

// copyStream copies src to dst until src ends, each read going out as one
// write (so one WebSocket frame per broker read, never delayed).
func (d *Dialer) copyStream(dst io.Writer, src io.Reader) error {
	small := make([]byte, smallCopySize)
	var large *[]byte
	defer func() {
		if large != nil {
			d.largeBuffers.Put(large)
		}
	}()
	for {
		buf := small
		if large != nil {
			buf = *large
		}
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch {
		case large == nil && n == len(small):
			large = d.largeBuffer()
		case large != nil && n <= len(small):
			d.largeBuffers.Put(large)
			large = nil
		}
	}
}

// closeWrite half-closes c when it can.
func closeWrite(c net.Conn) bool {
	cw, ok := c.(interface{ CloseWrite() error })
	return ok && cw.CloseWrite() == nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// largeBuffer takes a large copy buffer from the Dialer's pool.
func (d *Dialer) largeBuffer() *[]byte {
	if b, ok := d.largeBuffers.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, largeCopySize)
	return &b
}
