//go:build !linux

package park

import (
	"errors"
	"syscall"
)

// Supported reports whether parking works on this system.
const Supported = false

// Waiter is not available on this system.
type Waiter struct{}

// Init fails on this system.
func (w *Waiter) Init(syscall.RawConn, Readier) error {
	return errors.New("park: not supported on this system")
}

// Arm does nothing on this system.
func (w *Waiter) Arm() error { return errors.New("park: not supported on this system") }

// Close does nothing on this system.
func (w *Waiter) Close() {}
