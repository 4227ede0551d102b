#!/usr/bin/env bash
# Checks that a user's module importing github.com/mqttws/mqttws and
# github.com/mqttws/mqttws/backend gets only gobwas, klauspost/compress,
# go-proxyproto and golang.org/x modules: brokers, peers and rivals stay in
# modules of their own. Prints the consumer's module list.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
consumer=$(mktemp -d)
trap 'rm -rf "$consumer"' EXIT
cat > "$consumer/go.mod" <<EOF
module example.com/consumer

go 1.26.0

require github.com/mqttws/mqttws v0.0.0

replace github.com/mqttws/mqttws => $root
EOF
cat > "$consumer/main.go" <<'EOF'
package main

import (
	"net/http"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/backend"
)

func main() {
	http.Handle("/mqtt", &mqttws.Handler{Backend: backend.Dial("127.0.0.1:1883")})
}
EOF
cd "$consumer"
export GOWORK=off
go mod tidy
go build ./...
go list -m all
extra=$(go list -m all | grep -v -e '^example.com/consumer$' -e '^github.com/mqttws/mqttws ' -e '^github.com/gobwas/' -e '^github.com/klauspost/compress ' -e '^github.com/pires/go-proxyproto ' -e '^golang.org/x/' || true)
if [ -n "$extra" ]; then
	echo "modules a user of mqttws would download besides those allowed:"; echo "$extra"; exit 1
fi
