package compression

import (
	"runtime"
	"syscall"
	"time"
)

// cpuTime returns the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// memStats is runtime.MemStats, read.
type memStats struct{ runtime.MemStats }

func (m *memStats) read() { runtime.ReadMemStats(&m.MemStats) }
