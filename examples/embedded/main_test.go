package main

import (
	"os"
	"testing"

	"github.com/mqttws/mqttws/examples/internal/exampletest"
)

// program is this example, built once for the tests.
var program = exampletest.Program{Pkg: "."}

func TestMain(m *testing.M) {
	code := m.Run()
	program.Remove()
	os.Exit(code)
}

// start runs the example as shipped on a free loopback port, with flags
// added.
func start(t *testing.T, flags ...string) *exampletest.Process {
	t.Helper()
	return exampletest.Start(t, program.Path(t), append([]string{"-listen", "127.0.0.1:0"}, flags...)...)
}
