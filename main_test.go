package mqttws_test

import (
	"testing"

	"github.com/mqttws/mqttws/internal/leakcheck"
)

// TestMain fails the package when any goroutine outlives the tests: every
// connection, timer and backend must be gone once its test ends.
func TestMain(m *testing.M) {
	leakcheck.Main(m)
}
