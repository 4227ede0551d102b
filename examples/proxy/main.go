package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/backend"
	"github.com/mqttws/mqttws/examples/internal/options"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "`address` to serve HTTP on")
	upstream := flag.String("upstream", "", "the MQTT broker's TCP `addresses` (host:port), comma-separated for the nodes of a cluster; required")
	path := flag.String("path", "/mqtt", "URL `path` of the MQTT over WebSocket endpoint")
	proxyProtocol := flag.String("proxy-protocol", "off", "start broker connections with a PROXY protocol header of `VERSION` (off, v1 or v2) giving the client's address")
	var opts options.Handler
	opts.Register(flag.CommandLine)
	flag.Parse()
	upstreams := splitList(*upstream)
	ppVersion, ppOK := map[string]int{"off": 0, "v1": 1, "v2": 2}[*proxyProtocol]
	switch {
	case flag.NArg() > 0:
		options.UsageError("proxy", fmt.Sprintf("unexpected argument %q", flag.Arg(0)))
	case len(upstreams) == 0:
		options.UsageError("proxy", "-upstream is required: the broker's host:port, such as -upstream 127.0.0.1:1883")
	case !strings.HasPrefix(*path, "/") || strings.ContainsAny(*path, "{} \t"):
		options.UsageError("proxy", fmt.Sprintf("-path %q: want a URL path such as /mqtt", *path))
	case !ppOK:
		options.UsageError("proxy", fmt.Sprintf("-proxy-protocol %q: want off, v1 or v2", *proxyProtocol))
	}
	for _, u := range upstreams {
		if _, _, err := net.SplitHostPort(u); err != nil {
			options.UsageError("proxy", fmt.Sprintf("-upstream %q: want host:port: %v", u, err))
		}
	}
	if err := opts.Check(); err != nil {
		options.UsageError("proxy", err.Error())
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	slog.SetDefault(log)
	d := &backend.Dialer{Addresses: upstreams, ProxyProtocol: ppVersion}
	if err := run(*listen, d, *path, opts, log); err != nil {
		log.Error("proxy: " + err.Error())
		os.Exit(1)
	}
}

// run serves until SIGINT or SIGTERM, then stops everything in order.
func run(listen string, d *backend.Dialer, path string, opts options.Handler, log *slog.Logger) error {
	ws := &mqttws.Handler{Backend: d, Logger: log}
	opts.Apply(ws)
	mux := http.NewServeMux()
	mux.Handle(path, ws)
	if opts.Metrics {
		mux.Handle("/metrics", options.MetricsHandler(ws))
	}

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("cannot serve on -listen %s: %w", listen, err)
	}
	for _, u := range d.Addresses {
		go checkUpstream(u, log)
	}
	// Closing the WebSocket connections closes their broker connections.
	return options.Serve(ln, mux, ws, log, func(host string) string {
		return fmt.Sprintf("mqttws: serving ws://%s%s", host, path)
	})
}

// checkUpstream warns when the broker cannot be reached at startup: clients
// would then be closed with 1013 (Try Again Later), and a mistyped -upstream
// would show nowhere else.
func checkUpstream(upstream string, log *slog.Logger) {
	c, err := net.DialTimeout("tcp", upstream, 5*time.Second)
	if err != nil {
		log.Warn("broker not reachable now; WebSocket clients will be closed with 1013 until it is", "upstream", upstream, "err", err)
		return
	}
	_ = c.Close()
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(v string) []string {
	var items []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			items = append(items, s)
		}
	}
	return items
}
