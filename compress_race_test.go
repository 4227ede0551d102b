//go:build race

package mqttws

// The race detector makes sync.Pool drop items at random, so the pooled
// compressors and decompressors are allocated again now and then: the
// allocation tests of compress_alloc_test.go say nothing under it.
func init() { poolsRandomized = true }
