package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/backend"
	"github.com/mqttws/mqttws/examples/internal/options"
)

// config is the program's configuration, from its flags.
type config struct {
	listen    string
	path      string
	upstreams []string
	ppVersion int
	// Failover across the upstream nodes (backend.Dialer's fields).
	dialTimeout, connackTimeout, probeInterval time.Duration
	handler                                    options.Handler
	server                                     options.Server
}

func main() {
	var cfg config
	flag.StringVar(&cfg.listen, "listen", "127.0.0.1:8080", "`address` to serve HTTP on")
	upstream := flag.String("upstream", "", "the MQTT broker's TCP `addresses` (host:port), comma-separated for the nodes of a cluster; required")
	flag.StringVar(&cfg.path, "path", "/mqtt", "URL `path` of the MQTT over WebSocket endpoint")
	proxyProtocol := flag.String("proxy-protocol", "off", "start broker connections with a PROXY protocol header of `VERSION` (off, v1 or v2) giving the client's address")
	flag.DurationVar(&cfg.dialTimeout, "dial-timeout", backend.DefaultDialTimeout, "bound on the dial (and TLS handshake) to one broker node; past it the node is marked down and the next is tried while the client's CONNECT waits")
	flag.DurationVar(&cfg.connackTimeout, "connack-timeout", backend.DefaultConnackTimeout, "wait for a broker's answer to the client's CONNECT; past it the node is taken for hung, marked down, and the CONNECT goes to the next node (negative: none)")
	flag.DurationVar(&cfg.probeInterval, "probe-interval", backend.DefaultProbeInterval, "how often a down node is probed with an MQTT CONNECT (negative: no node tracking)")
	cfg.handler.Register(flag.CommandLine)
	cfg.server.Register(flag.CommandLine)
	options.SetUsage("proxy", "a WebSocket gateway in front of an MQTT broker: each MQTT over WebSocket connection becomes one TCP connection to the broker", "proxy -upstream HOST:PORT[,HOST:PORT...] [-listen ADDR] [-path /mqtt] [-tls-cert FILE -tls-key FILE] [flags]")
	flag.Parse()
	cfg.upstreams = splitList(*upstream)
	ppVersion, ppOK := map[string]int{"off": 0, "v1": 1, "v2": 2}[*proxyProtocol]
	cfg.ppVersion = ppVersion
	switch {
	case flag.NArg() > 0:
		options.UsageError("proxy", fmt.Sprintf("unexpected argument %q", flag.Arg(0)))
	case len(cfg.upstreams) == 0:
		options.UsageError("proxy", "-upstream is required: the broker's host:port, such as -upstream 127.0.0.1:1883")
	case !ppOK:
		options.UsageError("proxy", fmt.Sprintf("-proxy-protocol %q: want off, v1 or v2", *proxyProtocol))
	case cfg.dialTimeout <= 0:
		options.UsageError("proxy", fmt.Sprintf("-dial-timeout %v: want more than 0", cfg.dialTimeout))
	case cfg.connackTimeout == 0 || cfg.probeInterval == 0:
		options.UsageError("proxy", "-connack-timeout and -probe-interval: want a duration, or a negative one to turn them off")
	}
	for _, u := range cfg.upstreams {
		if _, _, err := net.SplitHostPort(u); err != nil {
			options.UsageError("proxy", fmt.Sprintf("-upstream %q: want host:port: %v", u, err))
		}
	}
	for _, check := range []func() error{
		func() error { return options.CheckPath(cfg.path) },
		cfg.handler.Check,
		cfg.server.Check,
	} {
		if err := check(); err != nil {
			options.UsageError("proxy", err.Error())
		}
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop) // a second signal kills the program at once
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		log.Error(fmt.Sprintf("proxy: cannot serve on -listen %s: %v", cfg.listen, err))
		os.Exit(1)
	}
	_, ws := cfg.server.Schemes()
	err = run(ctx, ln, cfg, log, func(host string) {
		fmt.Printf("mqttws: serving %s://%s%s\n", ws, host, cfg.path)
	})
	if err != nil {
		log.Error("proxy: " + err.Error())
		os.Exit(1)
	}
}

// run serves on ln until ctx is done, then stops everything in order. ready
// is called once it serves, with the host:port of its URL.
func run(ctx context.Context, ln net.Listener, cfg config, log *slog.Logger, ready func(host string)) error {
	d := &backend.Dialer{
		Addresses:      cfg.upstreams,
		ProxyProtocol:  cfg.ppVersion,
		Timeout:        cfg.dialTimeout,
		ConnackTimeout: cfg.connackTimeout,
		ProbeInterval:  cfg.probeInterval,
		Logger:         log,
	}
	ws := &mqttws.Handler{Backend: d, Logger: log}
	if err := cfg.handler.Apply(ws, ln.Addr()); err != nil {
		_ = ln.Close()
		return err
	}
	mux := http.NewServeMux()
	mux.Handle(cfg.path, ws)
	for _, u := range d.Addresses {
		go checkUpstream(u, log)
	}
	// Closing the WebSocket connections closes their broker connections.
	return cfg.server.Serve(ctx, ln, options.App{
		Handler:   mux,
		WS:        ws,
		Log:       log,
		Ready:     ready,
		Readiness: brokerReachable(d.Addresses),
	})
}

// brokerReachable returns the readiness check of the proxy: a TCP
// connection to one of the broker's nodes opens within the check's time
// (options.ReadyTimeout). The nodes are dialed side by side, and the
// connection closed at once, before the broker sees a byte: a broker
// expecting a PROXY protocol header may log each check as a client that
// went away. Checks run at most once per second, however many probes.
func brokerReachable(upstreams []string) func(context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel() // the other dials stop at the first success
		errs := make(chan error, len(upstreams))
		for _, u := range upstreams {
			go func() {
				var d net.Dialer
				c, err := d.DialContext(ctx, "tcp", u)
				if err == nil {
					_ = c.Close()
				}
				errs <- err
			}()
		}
		var failed []error
		for range upstreams {
			err := <-errs
			if err == nil {
				return nil
			}
			failed = append(failed, err)
		}
		return &options.Unready{Reason: "no broker node reachable", Err: errors.Join(failed...)}
	}
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
