package interop

import "syscall"

// sysProcAttr puts a child in a process group of its own, so that a
// timeout kills what it started too (Chromium's processes), and has the
// kernel kill it if the test binary dies without running its cleanups.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killGroup kills the process group of a child started with sysProcAttr.
func killGroup(pid int) error { return syscall.Kill(-pid, syscall.SIGKILL) }
