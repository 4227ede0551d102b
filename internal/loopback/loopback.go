// Package loopback gives tests real TCP connections on loopback. It
// imports nothing of this repository, so the root package's own tests can
// use it too.
package loopback

import (
	"net"
	"testing"
)

// Pair returns both ends of a loopback TCP connection, closed when the test
// ends.
func Pair(tb testing.TB) (server, client net.Conn) {
	tb.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		tb.Fatal("accept failed")
	}
	tb.Cleanup(func() {
		_ = client.Close()
		_ = server.Close()
	})
	return server, client
}
