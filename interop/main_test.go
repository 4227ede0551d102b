package interop

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/mqttws/mqttws/interop/h2ws"
)

// TestMain makes sure the HTTP/2 server takes extended CONNECT (see
// reexecWithXConnect), builds the example programs once for the whole
// package, and fails
// it when a goroutine outlives the tests: every Go client, server and child
// process must be gone once its test ends.
func TestMain(m *testing.M) {
	h2ws.ReexecWithXConnect()
	dir, err := os.MkdirTemp("", "mqttws-interop-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	examples.dir = dir
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { _ = os.RemoveAll(dir) }))
}
