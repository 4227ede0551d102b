// Package options holds what the two examples share: the command-line flags
// that configure an mqttws.Handler and the HTTP server around it, the server
// itself (timeouts, a cap on connections per client address, shutdown), and
// the handler's metrics in Prometheus format on a listener of their own.
package options

import (
	"flag"
	"fmt"
	"os"
)

// UsageError reports a command-line mistake of program prog, with the
// flags' usage, and exits with status 2.
func UsageError(prog, msg string) {
	fmt.Fprintf(os.Stderr, "%s: %s\n", prog, msg)
	flag.Usage()
	os.Exit(2)
}
