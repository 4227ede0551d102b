package mqttws_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when any goroutine outlives the tests: every
// connection, timer and backend must be gone once its test ends.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
