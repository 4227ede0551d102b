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
)

// shutdownTimeout bounds a stop: the HTTP server's, then the WebSocket
// connections'.
const shutdownTimeout = 10 * time.Second

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "`address` to serve HTTP on")
	upstream := flag.String("upstream", "", "the MQTT broker's TCP `address` (host:port), required")
	path := flag.String("path", "/mqtt", "URL `path` of the MQTT over WebSocket endpoint")
	flag.Parse()
	switch {
	case flag.NArg() > 0:
		usageError(fmt.Sprintf("unexpected argument %q", flag.Arg(0)))
	case *upstream == "":
		usageError("-upstream is required: the broker's host:port, such as -upstream 127.0.0.1:1883")
	case !strings.HasPrefix(*path, "/") || strings.ContainsAny(*path, "{} \t"):
		usageError(fmt.Sprintf("-path %q: want a URL path such as /mqtt", *path))
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	slog.SetDefault(log)
	if err := run(*listen, *upstream, *path, log); err != nil {
		log.Error("proxy: " + err.Error())
		os.Exit(1)
	}
}

func usageError(msg string) {
	fmt.Fprintf(os.Stderr, "proxy: %s\n", msg)
	flag.Usage()
	os.Exit(2)
}

// run serves until SIGINT or SIGTERM, then stops everything in order.
func run(listen, upstream, path string, log *slog.Logger) error {
	ws := &mqttws.Handler{Backend: backend.Dial(upstream), Logger: log}
	mux := http.NewServeMux()
	mux.Handle(path, ws)

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("cannot serve on -listen %s: %w", listen, err)
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	fmt.Printf("mqttws: serving ws://%s%s\n", displayHost(ln.Addr()), path)
	go checkUpstream(upstream, log)

	var serveErr error
	select {
	case <-ctx.Done():
		stop() // a second signal kills the program at once
		log.Info("shutting down")
	case err := <-served:
		serveErr = fmt.Errorf("http server: %w", err)
	}

	// http.Server.Shutdown leaves hijacked connections alone: the WebSocket
	// handler closes its own, which closes their broker connections.
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	errs := []error{serveErr}
	if err := srv.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("http server shutdown: %w", err))
		_ = srv.Close()
	}
	if err := ws.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("closing WebSocket connections: %w", err))
	}
	return errors.Join(errs...)
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

// displayHost returns host:port of addr for a URL, with "localhost" for a
// wildcard address such as ":8080".
func displayHost(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
