// Package sysinfo reads what the benchmarks need from Linux: a process's
// resident memory, the file-descriptor limit, and a description of the
// machine for reports.
package sysinfo

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// RSS returns the resident set size of process pid (0: this process), in
// bytes, from VmRSS in /proc/PID/status.
func RSS(pid int) (int64, error) {
	r, err := ResidentOf(pid)
	return r.Total, err
}

// Resident is a process's resident memory in bytes, from /proc/PID/status:
// Total (VmRSS) is Anon + File + Shmem.
type Resident struct {
	Total int64 // VmRSS
	Anon  int64 // RssAnon: private anonymous pages (Go heap, stacks, runtime metadata)
	File  int64 // RssFile: file-backed pages (the executable, shared libraries)
	Shmem int64 // RssShmem
}

// ResidentOf returns the resident memory of process pid (0: this process).
func ResidentOf(pid int) (Resident, error) {
	var r Resident
	path := "/proc/self/status"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/status", pid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	fields := map[string]*int64{"VmRSS": &r.Total, "RssAnon": &r.Anon, "RssFile": &r.File, "RssShmem": &r.Shmem}
	found := false
	for line := range bytes.Lines(b) {
		key, rest, ok := bytes.Cut(line, []byte(":"))
		dst := fields[string(key)]
		if !ok || dst == nil {
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) != 2 || f[1] != "kB" {
			return r, fmt.Errorf("sysinfo: unexpected %s line %q in %s", key, line, path)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return r, fmt.Errorf("sysinfo: %s in %s: %w", key, path, err)
		}
		*dst = kb << 10
		found = found || string(key) == "VmRSS"
	}
	if !found {
		return r, fmt.Errorf("sysinfo: no VmRSS in %s", path)
	}
	return r, nil
}

// RaiseFileLimit raises this process's RLIMIT_NOFILE to at least want (the
// hard limit too, which root may do up to fs.nr_open), and returns the soft
// limit in force. Children started afterwards inherit it.
func RaiseFileLimit(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	next := lim
	next.Cur = want
	if next.Max < want {
		next.Max = want
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err != nil {
		// Not root: go as far as the hard limit allows.
		next = syscall.Rlimit{Cur: lim.Max, Max: lim.Max}
		if err2 := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err2 != nil {
			return lim.Cur, err
		}
		return lim.Max, fmt.Errorf("sysinfo: file limit capped at the hard limit %d: %w", lim.Max, err)
	}
	return want, nil
}

// Machine describes the machine a run happens on.
type Machine struct {
	CPUs      int    // nproc
	CPUModel  string // "model name" in /proc/cpuinfo
	GoVersion string
	Kernel    string
	MemTotal  string // MemTotal in /proc/meminfo
}

// Describe reads the machine's description.
func Describe() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	m.CPUModel = firstField("/proc/cpuinfo", "model name")
	m.MemTotal = firstField("/proc/meminfo", "MemTotal")
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// String is the one-line description printed in reports.
func (m Machine) String() string {
	return fmt.Sprintf("%d CPUs (nproc), %s, %s memory, Linux %s, %s", m.CPUs, m.CPUModel, m.MemTotal, m.Kernel, m.GoVersion)
}

// firstField returns the value of the first "key : value" line for key.
func firstField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// Revision describes the source being measured: the repository's commit,
// with "+dirty" when the work tree has changes (git must be installed;
// "unknown" otherwise).
func Revision() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	rev := strings.TrimSpace(string(out))
	status, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output()
	if err == nil && len(bytes.TrimSpace(status)) > 0 {
		rev += "+dirty"
	}
	return rev
}

// LoadAverage returns the one-minute load average (/proc/loadavg): above
// the CPU count, other work competed with the measurement.
func LoadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
