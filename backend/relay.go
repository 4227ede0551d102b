package backend

import (
	"context"
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

// relay copies both ways between the client's stream and the broker, which
// b dials meanwhile; when watch is not nil, the client's first packet must
// be a CONNECT, whole within the watch's timeout. The broker closing its
// side ends the relay, and the client is then closed with 1000. The client
// closing its side half-closes the broker's connection, so that the broker
// sees a clean end of stream, and the relay waits a little for the broker to
// close in turn. A client that breaks the CONNECT rules is closed with the
// watch's code and the broker's connection dropped.
func (d *Dialer) relay(ctx context.Context, client net.Conn, b *pendingBroker, watch *connectWatch, cancelDial context.CancelFunc) error {
	var (
		wg sync.WaitGroup
		// Set by the client's side of the relay; read after wg.Wait.
		broken *mqttws.CloseError // the client broke the CONNECT rules
		upErr  error              // why the client's side ended before the copy began
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		broken, upErr = d.copyFromClient(ctx, client, b, watch, cancelDial)
	}()

	<-b.done
	if b.err != nil {
		wg.Wait() // a failed dial ends the client's side too
		switch {
		case broken != nil:
			return broken
		case upErr != nil && !errors.Is(upErr, errNoBroker):
			return nil // the client went away during the dial, which was then canceled
		}
		return b.err
	}

	broker := b.conn
	// An error writing to the client is the client's end, not the broker's
	// failure: the stream keeps its own record of it.
	brokerErr, _ := d.copyStream(client, broker, make([]byte, smallCopySize))
	waited := false
	if errors.Is(brokerErr, net.ErrClosed) {
		// The client's side closed the broker connection as it ended:
		// its reason decides.
		wg.Wait()
		waited = true
	}
	_ = broker.Close()
	var result error
	code, reason := mqttws.CloseNormal, ""
	switch {
	case waited && broken != nil:
		code, reason = broken.Code, broken.Reason
		result = broken
	case brokerErr != nil && !errors.Is(brokerErr, net.ErrClosed) && !isTimeout(brokerErr):
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
	if !waited {
		wg.Wait()
	}
	return result
}

// copyFromClient is the client's side of the relay: it watches the CONNECT
// (when watch is not nil), waits for the broker, and copies the client to it
// until the client ends; then it half-closes the broker's connection, or
// closes it when the client broke the CONNECT rules. broken is that rule;
// err, why the client's side ended before the copy began.
func (d *Dialer) copyFromClient(ctx context.Context, client net.Conn, b *pendingBroker, watch *connectWatch, cancelDial context.CancelFunc) (broken *mqttws.CloseError, err error) {
	buf := make([]byte, smallCopySize)
	if watch != nil {
		broken, err = watch.watch(ctx, client, b, buf)
		if broken != nil || err != nil {
			cancelDial() // no use for a broker connection any more
		}
	}
	<-b.done
	if b.err != nil {
		if broken == nil && err == nil {
			err = errNoBroker
		}
		return broken, err
	}
	broker := b.conn
	if broken != nil {
		_ = broker.Close()
		return broken, nil
	}
	if err == nil {
		_, _ = d.copyStream(broker, client, buf)
	}
	if !closeWrite(broker) {
		_ = broker.Close()
		return nil, err
	}
	_ = broker.SetReadDeadline(time.Now().Add(brokerLinger))
	return nil, err
}

// copyStream copies src to dst until src ends, each read going out as one
// write (so one WebSocket frame per broker read, never delayed). It reads
// into small while traffic is light. It returns the error that ended the
// copy: reading src (nil at its end) or writing dst.
func (d *Dialer) copyStream(dst io.Writer, src io.Reader, small []byte) (readErr, writeErr error) {
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
				return nil, werr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		if err != nil {
			return err, nil
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
