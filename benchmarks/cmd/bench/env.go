package main

import (
	"errors"
	"fmt"
	"slices"

	"github.com/mqttws/mqttws/benchmarks/internal/mosquitto"
	"github.com/mqttws/mqttws/benchmarks/internal/proc"
	"github.com/mqttws/mqttws/benchmarks/internal/sysinfo"
	"github.com/mqttws/mqttws/benchmarks/internal/targets"
)

// server is one running target: a child process of ours, a mosquitto, or
// both (the proxy and its broker).
type server struct {
	target string
	addr   string            // where clients connect
	proc   *proc.Proc        // the in-process target's child, if any
	broker *mosquitto.Broker // the target's mosquitto (the proxy's upstream), if any
}

// startServer starts target on free loopback ports.
func startServer(target string) (*server, error) {
	s := &server{target: target}
	addr, err := proc.FreeAddr()
	if err != nil {
		return nil, err
	}
	s.addr = addr
	if targets.Mosquitto(target) {
		brokerAddr := addr
		if targets.InProcess(target) {
			if brokerAddr, err = proc.FreeAddr(); err != nil {
				return nil, err
			}
		}
		s.broker, err = mosquitto.Start(brokerAddr, target == targets.MosquittoWS)
		if err != nil {
			return nil, err
		}
	}
	if targets.InProcess(target) {
		upstream := ""
		if s.broker != nil {
			upstream = s.broker.Addr
		}
		s.proc, err = proc.Start(target, addr, upstream)
		if err != nil {
			s.stop()
			return nil, err
		}
	}
	return s, nil
}

// url is the broker URL paho clients connect to.
func (s *server) url() string {
	if targets.WebSocket(s.target) {
		return "ws://" + s.addr + targets.Path
	}
	return "tcp://" + s.addr
}

// path is the WebSocket path, empty for TCP targets.
func (s *server) path() string {
	if targets.WebSocket(s.target) {
		return targets.Path
	}
	return ""
}

// memory is a server's memory at one moment, or the difference of two.
type memory struct {
	goServer bool // the target has a Go child, with heap and stack figures
	broker   bool // the target has a mosquitto

	rss       int64 // the whole target's: the proxy's plus its broker's
	procRSS   int64 // the child's
	brokerRSS int64 // the mosquitto's
	heap      int64 // the child's live Go heap
	stacks    int64 // the child's goroutine stacks
	goroutine int

	procFile int64          // the child's file-backed resident pages (RssFile)
	goMem    proc.Breakdown // the child's Go runtime memory, less what it released
}

// measure reads the server's memory; a Go child first collects garbage and
// returns free memory to the system.
func (s *server) measure() (memory, error) {
	var m memory
	if s.proc != nil {
		st, err := s.proc.Stats()
		if err != nil {
			return m, err
		}
		m.procRSS, m.heap, m.stacks, m.goroutine = st.RSS, int64(st.HeapAlloc), int64(st.StackInuse), st.Goroutines
		m.procFile, m.goMem = st.RSSFile, st.Breakdown()
	}
	if s.broker != nil {
		rss, err := s.broker.RSS()
		if err != nil {
			return m, err
		}
		m.brokerRSS = rss
	}
	m.rss = m.procRSS + m.brokerRSS
	return m, nil
}

// usage returns the CPU time and system calls of the whole target: the
// child and the broker.
func (s *server) usage() (sysinfo.Usage, error) {
	var total sysinfo.Usage
	for _, pid := range s.pids() {
		u, err := sysinfo.ProcUsage(pid)
		if err != nil {
			return total, err
		}
		total = total.Add(u)
	}
	return total, nil
}

// pids returns the target's processes.
func (s *server) pids() []int {
	var pids []int
	if s.proc != nil {
		pids = append(pids, s.proc.PID())
	}
	if s.broker != nil {
		pids = append(pids, s.broker.PID())
	}
	return pids
}

// stop stops the child and the broker.
func (s *server) stop() {
	var errs []error
	if s.proc != nil {
		errs = append(errs, s.proc.Stop())
	}
	if s.broker != nil {
		errs = append(errs, s.broker.Stop())
	}
	if err := errors.Join(errs...); err != nil {
		progressf("stopping %s: %v", s.target, err)
	}
}

// chosen is the -targets list; nil means every target.
var chosen []string

// available returns the chosen targets this machine can run: mosquitto's
// need the Debian package.
func available(all []string) []string {
	err := mosquitto.Available()
	var out []string
	for _, t := range all {
		if targets.Mosquitto(t) && err != nil || chosen != nil && !slices.Contains(chosen, t) {
			continue
		}
		out = append(out, t)
	}
	if err != nil {
		progressf("skipping mosquitto targets: %v", err)
	}
	return out
}

func e2eTargets() []string { return targets.All }

// idleTargets leaves out the TCP relay, which is a reference for CPU per
// message only: its idle connections hold goroutines, as any relay's that
// reads with a goroutine per side.
func idleTargets() []string {
	return slices.DeleteFunc(slices.Clone(targets.All), func(t string) bool { return t == targets.TCPProxy })
}

// describe names a server for progress lines.
func (s *server) describe() string { return fmt.Sprintf("%s at %s", s.target, s.url()) }
