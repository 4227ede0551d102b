//go:build !linux

package testbroker

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
