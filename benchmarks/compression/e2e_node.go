package compression

import (
	"bufio"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// NodeModules is where the Node runs find the npm packages mqtt (MQTT.js
// 5.16.0) and ws: the ones interop/package-lock.json pins, installed by
// `npm ci` in interop/. Relative to this package's directory, where go test
// runs it.
var NodeModules = filepath.Join("..", "..", "interop", "node_modules")

// nodeScript is the MQTT.js load, relative to this package's directory.
var nodeScript = filepath.Join("node", "load.cjs")

// CheckNode reports why the Node runs cannot start, if they cannot.
func CheckNode() error {
	if _, err := exec.LookPath("node"); err != nil {
		return fmt.Errorf("compression: node is not in PATH (%w): install Node 20 or later", err)
	}
	for _, f := range []string{"mqtt/build/index.js", "ws/package.json"} {
		if _, err := os.Stat(filepath.Join(NodeModules, f)); err != nil {
			return fmt.Errorf("compression: npm package file %s is missing (%w): run `npm ci` in interop/", f, err)
		}
	}
	return nil
}

// nodePlan is what node/load.cjs reads.
type nodePlan struct {
	URL        string   `json:"url"`
	Publishers int      `json:"publishers"`
	Messages   int      `json:"messages"`
	Window     int      `json:"window"`
	Backlog    int      `json:"backlog"`
	Series     []string `json:"series"` // base64, Load.Series as it is: byte-exact, where regenerating it in JavaScript would not be
	IDSize     int      `json:"idSize"`
	TimeoutMs  int64    `json:"timeoutMs"`
}

// nodeResult is what node/load.cjs prints.
type nodeResult struct {
	Sent       int      `json:"sent"`
	Received   int      `json:"received"`
	Duplicates int      `json:"duplicates"`
	Corrupt    int      `json:"corrupt"`
	ElapsedMs  float64  `json:"elapsedMs"`
	CPUUs      float64  `json:"cpuUs"`
	Extensions []string `json:"extensions"`
	Error      string   `json:"error"`
}

// RunNode runs l with MQTT.js clients in one Node process, over ws with its
// defaults: it offers permessage-deflate, and compresses the messages it
// sends when they are 1 KiB or more. Before the clients disconnect it
// calls atEnd, where the caller reads the broker's counters.
func RunNode(ctx context.Context, l Load, atEnd func()) (LoadResult, error) {
	if err := CheckNode(); err != nil {
		return LoadResult{}, err
	}
	if err := l.check(); err != nil {
		return LoadResult{}, err
	}
	series := make([]string, len(l.Series))
	for i, m := range l.Series {
		series[i] = base64.StdEncoding.EncodeToString(m)
	}
	modules, err := filepath.Abs(NodeModules)
	if err != nil {
		return LoadResult{}, err
	}
	plan, err := json.Marshal(nodePlan{
		URL:        l.URL,
		Publishers: l.Publishers,
		Messages:   l.Messages,
		Window:     max(l.Window, 1),
		Backlog:    cmp.Or(max(l.Backlog, 0), DefaultBacklog),
		Series:     series,
		IDSize:     IDSize,
		TimeoutMs:  l.Timeout.Milliseconds(),
	})
	if err != nil {
		return LoadResult{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, l.Timeout+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", nodeScript)
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	cmd.WaitDelay = 5 * time.Second
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return LoadResult{}, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return LoadResult{}, err
	}
	if err := cmd.Start(); err != nil {
		return LoadResult{}, fmt.Errorf("compression: start node: %w", err)
	}
	finish := func() error {
		_ = in.Close()
		if err := cmd.Wait(); err != nil {
			return fmt.Errorf("compression: node %s: %w: %s", nodeScript, err, stderr)
		}
		return nil
	}
	if _, err := in.Write(append(plan, '\n')); err != nil {
		return LoadResult{}, errors.Join(fmt.Errorf("compression: node plan: %w", err), finish())
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return LoadResult{}, errors.Join(fmt.Errorf("compression: node printed no result: %w: %s", err, stderr), finish())
	}
	var r nodeResult
	if err := json.Unmarshal([]byte(strings.TrimSpace(line)), &r); err != nil {
		return LoadResult{}, errors.Join(fmt.Errorf("compression: node printed %q: %w", line, err), finish())
	}
	if r.Error != "" {
		return LoadResult{}, errors.Join(fmt.Errorf("compression: MQTT.js: %s", r.Error), finish())
	}
	if atEnd != nil {
		atEnd()
	}
	if err := finish(); err != nil {
		return LoadResult{}, err
	}
	return LoadResult{
		Sent:       r.Sent,
		Received:   r.Received,
		Duplicates: r.Duplicates,
		Corrupt:    r.Corrupt,
		Elapsed:    time.Duration(r.ElapsedMs * float64(time.Millisecond)),
		Extensions: r.Extensions,
		ClientCPU:  time.Duration(r.CPUUs * float64(time.Microsecond)),
	}, nil
}
