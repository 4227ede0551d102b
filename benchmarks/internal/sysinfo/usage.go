package sysinfo

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Usage is what a process has consumed so far.
type Usage struct {
	CPUSeconds float64 // user and system time
	Syscalls   int64   // read and write system calls (syscr + syscw of /proc/PID/io)
}

// Add returns the sum of two usages.
func (u Usage) Add(v Usage) Usage {
	return Usage{CPUSeconds: u.CPUSeconds + v.CPUSeconds, Syscalls: u.Syscalls + v.Syscalls}
}

// Sub returns u minus an earlier usage.
func (u Usage) Sub(v Usage) Usage {
	return Usage{CPUSeconds: u.CPUSeconds - v.CPUSeconds, Syscalls: u.Syscalls - v.Syscalls}
}

// userHZ is the unit of the times in /proc/PID/stat: USER_HZ, 100 on every
// Linux architecture's ABI.
const userHZ = 100

// ProcUsage reads process pid's CPU time (/proc/PID/stat) and read and
// write system calls (/proc/PID/io, readable by root or the process's
// owner).
func ProcUsage(pid int) (Usage, error) {
	var u Usage
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, err
	}
	// Fields follow the command name in parentheses, which may hold spaces.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return u, fmt.Errorf("sysinfo: unexpected /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(stat[i+1:]))
	// utime and stime are fields 14 and 15 of the whole line; fields here
	// start at field 3.
	if len(fields) < 13 {
		return u, fmt.Errorf("sysinfo: short /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return u, fmt.Errorf("sysinfo: /proc/%d/stat times: %v %v", pid, err1, err2)
	}
	u.CPUSeconds = float64(utime+stime) / userHZ
	io, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return u, err
	}
	for line := range bytes.Lines(io) {
		name, value, ok := strings.Cut(strings.TrimSpace(string(line)), ": ")
		if !ok || (name != "syscr" && name != "syscw") {
			continue
		}
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			return u, err
		}
		u.Syscalls += n
	}
	return u, nil
}
