package exampletest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// buildTimeout bounds the build of an example.
const buildTimeout = 5 * time.Minute

// Program is an example program, built once per test binary (on first use)
// into a temporary directory, without the race detector: the program as
// shipped, whose memory the tests measure.
type Program struct {
	// Pkg is the package to build, as the go command takes it ("." for the
	// package under test).
	Pkg string

	once sync.Once
	dir  string
	path string
	err  error
}

// Path returns the path of the built program, building it on first use,
// and fails the test if the build fails.
func (p *Program) Path(t testing.TB) string {
	t.Helper()
	p.once.Do(p.build)
	if p.err != nil {
		t.Fatal(p.err)
	}
	return p.path
}

func (p *Program) build() {
	gobin, err := exec.LookPath("go")
	if err != nil {
		p.err = fmt.Errorf("the go command is not in PATH: %w", err)
		return
	}
	p.dir, err = os.MkdirTemp("", "mqttws-example-")
	if err != nil {
		p.err = fmt.Errorf("build %s: %w", p.Pkg, err)
		return
	}
	p.path = filepath.Join(p.dir, "example")
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	args := []string{"build", "-o", p.path, p.Pkg}
	if out, err := exec.CommandContext(ctx, gobin, args...).CombinedOutput(); err != nil {
		p.err = fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
}

// Remove removes the built program; call it from TestMain once the tests
// have run.
func (p *Program) Remove() {
	if p.dir != "" {
		_ = os.RemoveAll(p.dir)
	}
}
