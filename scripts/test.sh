#!/usr/bin/env bash
# Runs the whole mqttws test suite on a fresh Debian machine, installing the
# peers the tests need when they are missing. A missing peer fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

# Peers from Debian's packages.
need=()
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || need+=(mosquitto)
# interop/: headless Chromium, nginx in front, Node for the JavaScript clients.
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/sbin/nginx ] || need+=(nginx)
[ -f /usr/lib/nginx/modules/ngx_stream_module.so ] || need+=(libnginx-mod-stream)
command -v node >/dev/null || need+=(nodejs)
# The deployment guide's systemd unit is checked with systemd-analyze.
command -v systemd-analyze >/dev/null || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
	step "installing ${need[*]}"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's nodejs has no npm of its own (NodeSource's has).
if ! command -v npm >/dev/null; then
	step "installing npm"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends npm >/dev/null
fi

# The JavaScript MQTT clients of interop/, as its lock file pins them.
step "npm ci (interop/)"
(cd interop && npm ci --no-audit --no-fund --loglevel=error)

step "gofmt"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "not gofmt-ed:"; echo "$unformatted"; exit 1
fi

# The repository is a workspace (go.work) of modules: the root (what users
# import: mqttws and backend), backend/mochi, examples, interop,
# internal/soak, internal/pahotest and benchmarks. A package pattern with the
# module path reaches into all of them.
all=github.com/mqttws/mqttws/...

step "go vet"
go vet "$all"

step "staticcheck"
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 "$all"

step "the root package imports gobwas/ws, klauspost/compress and the standard library only"
deps=$(go list -deps -f '{{if not .Standard}}{{.ImportPath}}{{end}}' . | grep -v -e '^github.com/mqttws/mqttws$' -e '^github.com/mqttws/mqttws/internal/park$' -e '^github.com/gobwas/' -e '^github.com/klauspost/compress/' || true)
if [ -n "$deps" ]; then
	echo "unexpected dependencies of package mqttws:"; echo "$deps"; exit 1
fi

step "a module importing mqttws and mqttws/backend gets gobwas, klauspost/compress, go-proxyproto and golang.org/x only"
./scripts/lean-module.sh

# interop/'s cluster test runs NATS Server v2.15.2 (Debian's 2.9.10 loses
# acknowledged QoS 1 messages in a cluster), built into $(go env GOPATH)/bin.
nats_server="$(go env GOPATH | cut -d: -f1)/bin/nats-server"
if ! "$nats_server" --version 2>/dev/null | grep -qF v2.15.2; then
	step "go install nats-server v2.15.2"
	go install github.com/nats-io/nats-server/v2@v2.15.2
fi

step "go test -race (every module but benchmarks, whose harness checks run below)"
go test -race -count=1 -timeout 15m $(go list "$all" | grep -v '/benchmarks/')

step "internal/soak without -race: 10,000 connections at once (2,000 under -race above)"
go test -count=1 -timeout 10m ./internal/soak

step "allocation tests without -race (under it sync.Pool drops items at random and the compression ones skip)"
go test -count=1 -run 'Alloc' . ./backend

step "benchmark harness checks (no timing)"
go test -count=1 -timeout 5m ./benchmarks/compression ./benchmarks/internal/report ./benchmarks/internal/proc ./benchmarks/internal/sysinfo

step "fuzz (short runs; the seed corpus in testdata/ also runs above)"
# Budgets are counts of executions, not durations: a duration (-fuzztime 10s)
# races Go's fuzzing coordinator at the deadline and can fail a clean run with
# a bare "context deadline exceeded" and no crasher (golang/go#75804, fixed in
# Go 1.27; it failed this suite once on Go 1.26.8). Each count is what this
# 2-core machine runs in about 5-10 s; -timeout bounds a starved run.
fuzz() { go test -run '^$' -fuzz "^$1\$" -fuzztime "$2" -timeout 5m "$3"; }
fuzz FuzzFrameReader 60000x .
fuzz FuzzFastPathAgreesWithSlowPath 40000x .
fuzz FuzzHandshake 40000x .
fuzz FuzzClientAddr 60000x .
fuzz FuzzInflatingReader 50000x .
fuzz FuzzStoredPathAgreesWithDecompressor 100000x .
fuzz FuzzConnectWatch 100000x ./backend
fuzz FuzzPacketTracker 30000x ./backend
