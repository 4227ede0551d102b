package main

import (
	"time"

	"github.com/mqttws/mqttws/benchmarks/frameio"
)

// plan is what one mode measures, and how long.
type plan struct {
	frameRounds int           // repetitions of every frame benchmark
	benchtime   time.Duration // testing's -benchtime for each
	frameSizes  []int

	e2eRounds  int
	publishers int
	window     int         // publishes in flight per publisher
	e2eSizes   []int       // payload bytes
	messages   map[int]int // per publisher, by payload size
	e2eTimeout time.Duration

	idleCounts []int // idle connections measured
}

// plans by -mode. quick stays under 5 minutes on a 2-core machine.
var plans = map[string]plan{
	"quick": {
		frameRounds: 4,
		benchtime:   200 * time.Millisecond,
		frameSizes:  frameio.Sizes,
		e2eRounds:   5,
		publishers:  4,
		window:      16,
		e2eSizes:    []int{64, 16 << 10},
		messages:    map[int]int{64: 2500, 16 << 10: 500},
		e2eTimeout:  5 * time.Second,
		idleCounts:  []int{1000, 10000},
	},
	"full": {
		frameRounds: 5,
		benchtime:   1 * time.Second,
		frameSizes:  frameio.Sizes,
		e2eRounds:   5,
		publishers:  4,
		window:      16,
		e2eSizes:    []int{64, 16 << 10},
		messages:    map[int]int{64: 25000, 16 << 10: 2500},
		e2eTimeout:  30 * time.Second,
		idleCounts:  []int{1000, 10000, 25000}, // capped by RLIMIT_NOFILE where it cannot be raised
	},
}
