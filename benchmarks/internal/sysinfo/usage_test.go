package sysinfo

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// 20 ms of CPU, by getrusage's count, show as 20 ms, not as a multiple of
// /proc/PID/stat's 10 ms ticks.
func TestProcUsageCountsMillisecondsOfCPU(t *testing.T) {
	before, err := ProcUsage(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	spent := spin(t, 20*time.Millisecond)
	time.Sleep(10 * time.Millisecond) // the spinning thread's run time is brought up to date when it sleeps
	after, err := ProcUsage(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	used := time.Duration(after.Sub(before).CPUSeconds * 1e9)
	if used < spent-3*time.Millisecond || used > spent+8*time.Millisecond {
		t.Fatalf("ProcUsage counts %v of CPU where getrusage counts %v", used, spent)
	}
	if _, err := runTime(os.Getpid()); err != nil {
		t.Fatalf("schedstat: %v", err)
	}
}

// spin keeps the CPU busy until the process has used d more of it, by
// getrusage, and returns what it used.
func spin(t *testing.T, d time.Duration) time.Duration {
	start := cpu(t)
	x := 0
	for cpu(t)-start < d {
		for range 10000 {
			x++
		}
	}
	return cpu(t) - start
}

func cpu(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
