// Package targets names the servers the MQTT benchmarks compare and starts
// the in-process ones: mochi-mqtt behind mqttws, behind its own WebSocket
// and TCP listeners, and the mqttws proxy. mosquitto, the other broker, is a
// program of its own (package mosquitto).
package targets

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/backend"
	"github.com/mqttws/mqttws/backend/mochi"
)

// Target names, as they appear in tables, CSV and charts.
const (
	MQTTWSMochi  = "mqttws+mochi"  // mochi in-process behind an mqttws.Handler
	MochiWS      = "mochi-ws"      // mochi's own (gorilla) WebSocket listener
	MochiTCP     = "mochi-tcp"     // mochi's plain TCP listener
	MQTTWSProxy  = "mqttws-proxy"  // mqttws with backend.Dial in front of mosquitto
	MosquittoWS  = "mosquitto-ws"  // mosquitto's own WebSocket listener
	MosquittoTCP = "mosquitto-tcp" // mosquitto's plain TCP listener
	TCPProxy     = "tcp-proxy"     // a plain TCP relay in front of mosquitto: the floor of any extra hop
)

// All lists every target, mqttws ones before their rivals.
var All = []string{MQTTWSMochi, MochiWS, MochiTCP, MQTTWSProxy, MosquittoWS, MosquittoTCP, TCPProxy}

// Path is the HTTP path of every WebSocket target.
const Path = "/mqtt"

// WebSocket reports whether clients reach target over WebSocket.
func WebSocket(target string) bool {
	switch target {
	case MQTTWSMochi, MochiWS, MQTTWSProxy, MosquittoWS:
		return true
	}
	return false
}

// Mosquitto reports whether target needs a mosquitto process: as the broker
// itself, or as the proxy's upstream.
func Mosquitto(target string) bool {
	switch target {
	case MQTTWSProxy, MosquittoWS, MosquittoTCP, TCPProxy:
		return true
	}
	return false
}

// InProcess reports whether target runs in a Go process of ours (package
// proc), rather than being mosquitto alone.
func InProcess(target string) bool {
	switch target {
	case MQTTWSMochi, MochiWS, MochiTCP, MQTTWSProxy, TCPProxy:
		return true
	}
	return false
}

// Serve starts the in-process target on addr ("127.0.0.1:port"); the proxy
// relays to upstream. It returns once the target listens, with the function
// that stops it.
func Serve(target, addr, upstream string) (stop func(), err error) {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	switch target {
	case MochiTCP:
		return serveMochi(log, listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr}))
	case MochiWS:
		return serveMochi(log, listeners.NewWebsocket(listeners.Config{ID: "ws", Address: addr}))
	case MQTTWSMochi:
		return serveMQTTWSMochi(log, addr)
	case MQTTWSProxy:
		if upstream == "" {
			return nil, errors.New("targets: the proxy needs an upstream address")
		}
		return serveHTTP(addr, &mqttws.Handler{Backend: backend.Dial(upstream), Logger: log})
	case TCPProxy:
		if upstream == "" {
			return nil, errors.New("targets: the proxy needs an upstream address")
		}
		return serveTCPProxy(addr, upstream)
	}
	return nil, fmt.Errorf("targets: %q is not an in-process target", target)
}

// newMochi returns a mochi server that lets every client in, with the
// library's default options otherwise.
func newMochi(log *slog.Logger) (*mqtt.Server, error) {
	s := mqtt.New(&mqtt.Options{Logger: log})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, err
	}
	return s, nil
}

// serveMochi runs a mochi server with one of its own listeners.
func serveMochi(log *slog.Logger, l listeners.Listener) (func(), error) {
	s, err := newMochi(log)
	if err != nil {
		return nil, err
	}
	if err := s.AddListener(l); err != nil {
		return nil, err
	}
	if err := s.Serve(); err != nil {
		return nil, err
	}
	return func() { _ = s.Close() }, nil
}

// serveMQTTWSMochi runs a mochi server whose clients come through an
// mqttws.Handler with default settings, as the README shows.
func serveMQTTWSMochi(log *slog.Logger, addr string) (func(), error) {
	s, err := newMochi(log)
	if err != nil {
		return nil, err
	}
	b, err := mochi.Attach(s, mochi.Options{})
	if err != nil {
		return nil, err
	}
	if err := s.Serve(); err != nil {
		return nil, err
	}
	stopHTTP, err := serveHTTP(addr, &mqttws.Handler{Backend: b, Logger: log})
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	return func() {
		stopHTTP()
		_ = s.Close()
	}, nil
}

// serveHTTP serves h at Path on addr with a plain http.Server.
func serveHTTP(addr string, h *mqttws.Handler) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle(Path, h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.Shutdown(ctx)
		_ = srv.Shutdown(ctx)
	}, nil
}

// serveTCPProxy relays each connection to upstream with io.Copy each way,
// which moves the bytes with splice(2) between two TCP sockets: no
// WebSocket, no copy through user space, two goroutines per connection. It
// is what an extra hop costs at the least, whatever speaks on it.
func serveTCPProxy(addr, upstream string) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	track := func(c net.Conn, add bool) bool {
		mu.Lock()
		defer mu.Unlock()
		if !add {
			delete(conns, c)
			return true
		}
		if conns == nil {
			return false // stopped
		}
		conns[c] = struct{}{}
		return true
	}
	relay := func(client net.Conn) {
		defer wg.Done()
		defer client.Close()
		if !track(client, true) {
			return
		}
		defer track(client, false)
		broker, err := net.Dial("tcp", upstream)
		if err != nil {
			return
		}
		defer broker.Close()
		done := make(chan struct{})
		go func() {
			_, _ = io.Copy(broker, client)
			_ = broker.(*net.TCPConn).CloseWrite()
			close(done)
		}()
		_, _ = io.Copy(client, broker)
		_ = client.Close()
		<-done
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go relay(c)
		}
	}()
	return func() {
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		conns = nil
		mu.Unlock()
		wg.Wait()
	}, nil
}
