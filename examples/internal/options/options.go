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

// SetUsage makes flag.Usage print what program prog does (summary, one
// line), how to call it (synopsis) and its flags: under go run, os.Args[0]
// is a path in the build cache, which says nothing.
func SetUsage(prog, summary, synopsis string) {
	flag.Usage = func() {
		out := flag.CommandLine.Output()
		fmt.Fprintf(out, "%s: %s\n\nUsage: %s\n\nFlags:\n", prog, summary, synopsis)
		flag.PrintDefaults()
	}
}

// UsageError reports a command-line mistake of program prog, with the
// flags' usage, and exits with status 2.
func UsageError(prog, msg string) {
	fmt.Fprintf(os.Stderr, "%s: %s\n", prog, msg)
	flag.Usage()
	os.Exit(2)
}
