package frameio

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	coder "github.com/coder/websocket"
	"github.com/gorilla/websocket"

	"github.com/mqttws/mqttws"
)

// Server is one server side under test. Start serves a loopback listener
// and hands over each accepted connection, once it is a stream of bytes, on
// the streams channel.
type Server struct {
	// Name identifies the server in benchmark names and reports.
	Name string
	// Framed is true when clients must speak WebSocket to it.
	Framed bool

	start func(ln net.Listener, streams chan<- io.ReadWriteCloser) (stop func())
}

// Server names, as they appear in benchmark names and results.
const (
	MQTTWS  = "mqttws"
	Gorilla = "gorilla"
	Coder   = "coder"
	TCP     = "tcp"
)

// Servers returns the four servers measured, mqttws first.
func Servers() []Server {
	return []Server{
		{Name: MQTTWS, Framed: true, start: startMQTTWS},
		{Name: Gorilla, Framed: true, start: startGorilla},
		{Name: Coder, Framed: true, start: startCoder},
		{Name: TCP, Framed: false, start: startTCP},
	}
}

// quietLogger drops the handlers' debug lines.
var quietLogger = slog.New(slog.DiscardHandler)

// startMQTTWS serves ln with a real mqttws.Handler whose backend hands the
// *mqttws.Stream over and holds it until the stream closes.
func startMQTTWS(ln net.Listener, streams chan<- io.ReadWriteCloser) func() {
	h := &mqttws.Handler{
		Backend: mqttws.BackendFunc(func(ctx context.Context, conn net.Conn) error {
			streams <- conn
			<-ctx.Done()
			return nil
		}),
		PingInterval: -1, // no pings in the middle of a measurement
		CloseTimeout: time.Second,
		Logger:       quietLogger,
	}
	srv := &http.Server{Handler: h, ErrorLog: nil}
	go func() { _ = srv.Serve(ln) }()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = h.Shutdown(ctx)
		_ = srv.Close()
	}
}

// startGorilla serves ln the way mochi-mqtt's WebSocket listener does: a
// gorilla Upgrader with default buffers, subprotocol "mqtt", and the
// connection adapted to a stream with NextReader and WriteMessage. Like
// mochi's handler, it stays in ServeHTTP for the connection's life.
func startGorilla(ln net.Listener, streams chan<- io.ReadWriteCloser) func() {
	upgrader := &websocket.Upgrader{
		Subprotocols: []string{"mqtt"},
		CheckOrigin:  func(*http.Request) bool { return true },
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		b := newGorillaBridge(c)
		streams <- b
		<-b.closed
	})}
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close() }
}

// startCoder serves ln with coder/websocket's Accept and NetConn.
func startCoder(ln net.Listener, streams chan<- io.ReadWriteCloser) func() {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := coder.Accept(w, r, &coder.AcceptOptions{Subprotocols: []string{"mqtt"}})
		if err != nil {
			return
		}
		nc := coder.NetConn(context.Background(), c, coder.MessageBinary)
		cc := &closeNotifier{ReadWriteCloser: nc, closed: make(chan struct{})}
		streams <- cc
		<-cc.closed
	})}
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close() }
}

// startTCP hands over accepted TCP connections as they are, reading through
// a buffer of mqttws's default read buffer size: the ceiling a stream over
// frames can reach, with no framing at all.
func startTCP(ln net.Listener, streams chan<- io.ReadWriteCloser) func() {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			streams <- &bufferedConn{Conn: c, r: bufio.NewReaderSize(c, mqttws.DefaultReadBufferSize)}
		}
	}()
	return func() { _ = ln.Close() }
}

// bufferedConn reads a TCP connection through a bufio.Reader and writes to
// it directly, each Write one system call, as a stream must.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// closeNotifier closes closed once Close is called, so that a handler can
// stay in ServeHTTP until the stream is done with.
type closeNotifier struct {
	io.ReadWriteCloser
	once   sync.Once
	closed chan struct{}
}

func (c *closeNotifier) Close() error {
	err := c.ReadWriteCloser.Close()
	c.once.Do(func() { close(c.closed) })
	return err
}

// errNoStream is returned when a server did not hand a stream over in time.
var errNoStream = errors.New("frameio: the server handed no stream over within 5s")
