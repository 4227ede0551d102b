package frameio

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
)

// syscallCounts returns the read and write system calls this process has
// made so far (syscr and syscw of /proc/self/io; writev counts as a write),
// or ok false where that file does not exist. The benchmarks divide the
// server's side of them by the operations: the client only writes in read
// benchmarks and only reads in write benchmarks, so the count stays the
// server's.
func syscallCounts() (reads, writes int64, ok bool) {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0, 0, false
	}
	for line := range bytes.Lines(b) {
		name, value, found := bytes.Cut(bytes.TrimSpace(line), []byte(": "))
		if !found {
			continue
		}
		n, err := strconv.ParseInt(string(value), 10, 64)
		if err != nil {
			continue
		}
		switch string(name) {
		case "syscr":
			reads = n
		case "syscw":
			writes = n
		}
	}
	return reads, writes, true
}

// cpuTime returns the CPU time (user and system) this process has used so
// far, or ok false where getrusage fails. Unlike ns/op, CPU time per
// operation hardly moves when other processes share the machine; it counts
// the client's side too, which is the same for every server.
func cpuTime() (ns int64, ok bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return ru.Utime.Nano() + ru.Stime.Nano(), true
}
