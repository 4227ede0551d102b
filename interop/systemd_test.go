package interop

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// deployGuideUnit is the systemd unit of the deployment guide.
const deployGuideUnit = "../docs/mqttws.service"

// TestDeployGuideSystemdUnit: the guide's unit passes systemd-analyze
// verify without a warning (with ExecStart's binary the example built
// here), and its command line starts the gateway.
func TestDeployGuideSystemdUnit(t *testing.T) {
	t.Parallel()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is missing: apt-get install systemd (./scripts/test.sh installs it)")
	}
	unit, err := os.ReadFile(deployGuideUnit)
	if err != nil {
		t.Fatal(err)
	}
	guide, err := os.ReadFile("../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(guide), "```ini\n"+string(unit)) {
		t.Fatalf("docs/deploy.md does not show %s as it is", deployGuideUnit)
	}
	proxy := exampleBinary(t, "proxy")
	const installed = "/usr/local/bin/mqttws-proxy"
	if strings.Count(string(unit), installed) != 1 {
		t.Fatalf("%s: want one ExecStart of %s", deployGuideUnit, installed)
	}
	path := filepath.Join(t.TempDir(), "mqttws.service")
	if err := os.WriteFile(path, []byte(strings.Replace(string(unit), installed, proxy, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}

	var execStart string
	for _, line := range strings.Split(string(unit), "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			execStart = v
		}
	}
	args := strings.Fields(execStart)[1:]
	for i, a := range args {
		if a == "127.0.0.1:8080" || a == "127.0.0.1:9090" {
			args[i] = "127.0.0.1:0"
		}
	}
	line := startProcess(t, proxy, args...)
	if !strings.Contains(line, "ws://127.0.0.1:") {
		t.Fatalf("the unit's command line printed %q, want the gateway's URL", line)
	}
}
