package sysinfo

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
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

// ProcUsage reads process pid's CPU time and its read and write system
// calls (/proc/PID/io, readable by root or the process's owner).
//
// CPU time is the sum of the scheduler's run time of each of the process's
// threads (/proc/PID/task/TID/schedstat, in nanoseconds), so that a
// measurement of a few hundred milliseconds is not rounded to the 10 ms
// ticks of /proc/PID/stat, which it falls back to when schedstat is
// missing. A thread that exits takes its time with it: Go's threads and
// mosquitto's do not exit while they serve.
func ProcUsage(pid int) (Usage, error) {
	var u Usage
	cpu, err := runTime(pid)
	if err != nil {
		if cpu, err = tickTime(pid); err != nil {
			return u, err
		}
	}
	u.CPUSeconds = cpu
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

// runTime sums the run time of pid's threads from their schedstat files.
func runTime(pid int) (float64, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var ns int64
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/schedstat")
		if errors.Is(err, fs.ErrNotExist) {
			continue // the thread exited meanwhile
		}
		if err != nil {
			return 0, err
		}
		first, _, _ := strings.Cut(string(b), " ")
		n, err := strconv.ParseInt(first, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("sysinfo: %s/%s/schedstat: %w", dir, t.Name(), err)
		}
		ns += n
	}
	return float64(ns) / 1e9, nil
}

// tickTime reads pid's user and system time from /proc/PID/stat.
func tickTime(pid int) (float64, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields follow the command name in parentheses, which may hold spaces.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("sysinfo: unexpected /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(stat[i+1:]))
	// utime and stime are fields 14 and 15 of the whole line; fields here
	// start at field 3.
	if len(fields) < 13 {
		return 0, fmt.Errorf("sysinfo: short /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("sysinfo: /proc/%d/stat times: %v %v", pid, err1, err2)
	}
	return float64(utime+stime) / userHZ, nil
}
