//go:build !linux

package exampletest

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
