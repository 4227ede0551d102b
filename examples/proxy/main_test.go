package main

import (
	"io"
	"net"
	"os"
	"sync"
	"testing"

	"github.com/mqttws/mqttws/examples/internal/exampletest"
)

// program is this example, built once for the tests.
var program = exampletest.Program{Pkg: "."}

func TestMain(m *testing.M) {
	code := m.Run()
	program.Remove()
	os.Exit(code)
}

// start runs the example as shipped on a free loopback port, in front of an
// echo server, with flags added.
func start(t *testing.T, flags ...string) *exampletest.Process {
	t.Helper()
	args := append([]string{"-listen", "127.0.0.1:0", "-upstream", echoServer(t)}, flags...)
	return exampletest.Start(t, program.Path(t), args...)
}

// echoServer runs a TCP server that sends back what it receives, a stand-in
// for the broker, until the test ends, and returns its address.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				_, _ = io.Copy(c, c)
				_ = c.Close()
			})
		}
	})
	return ln.Addr().String()
}
