package testbroker

import (
	"fmt"
	"net"
	"syscall"
	"time"
)

// synDropper holds a loopback port with a listening socket whose accept
// queue is full, so that the kernel drops the SYN of every new connection:
// a dial to it times out, as to a host that is gone.
type synDropper struct {
	fd     int
	filler net.Conn // the connection that fills the queue
	addr   string
}

// dropSYNs binds port on 127.0.0.1 (0: a free one) with a backlog of 0,
// which the first connection, made here, fills.
func dropSYNs(port int) (*synDropper, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	fail := func(step string, err error) (*synDropper, error) {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("%s 127.0.0.1:%d: %w", step, port, err)
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		return fail("SO_REUSEADDR", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port}); err != nil {
		return fail("bind", err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		return fail("listen", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	s := &synDropper{fd: fd, addr: fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)}
	s.filler, err = net.DialTimeout("tcp4", s.addr, 5*time.Second)
	if err != nil {
		return fail("fill the accept queue of", err)
	}
	return s, nil
}

// Close releases the port.
func (s *synDropper) Close() error {
	_ = s.filler.Close()
	return syscall.Close(s.fd)
}
