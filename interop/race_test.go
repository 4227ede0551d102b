//go:build race

package interop

// The examples run under the race detector too when the tests do.
func init() { raceEnabled = true }
