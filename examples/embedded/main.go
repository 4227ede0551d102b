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
	"syscall"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/backend/mochi"
	"github.com/mqttws/mqttws/examples/internal/options"
)

// shutdownTimeout bounds a stop: the HTTP server's, then the WebSocket
// connections'.
const shutdownTimeout = 10 * time.Second

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "`address` to serve HTTP on")
	path := flag.String("path", "/mqtt", "URL `path` of the MQTT over WebSocket endpoint")
	var opts options.Handler
	opts.Register(flag.CommandLine)
	flag.Parse()
	if flag.NArg() > 0 {
		usageError(fmt.Sprintf("unexpected argument %q", flag.Arg(0)))
	}
	if err := checkPath(*path); err != nil {
		usageError(err.Error())
	}
	if err := opts.Check(); err != nil {
		usageError(err.Error())
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	slog.SetDefault(log)
	if err := run(*listen, *path, opts, log); err != nil {
		log.Error("embedded: " + err.Error())
		os.Exit(1)
	}
}

func usageError(msg string) {
	fmt.Fprintf(os.Stderr, "embedded: %s\n", msg)
	flag.Usage()
	os.Exit(2)
}

// run serves until SIGINT or SIGTERM, then stops everything in order.
func run(listen, path string, opts options.Handler, log *slog.Logger) error {
	// mochi logs each client at info level: keep its warnings only, so that
	// the line with the URL stays readable.
	broker := mqtt.New(&mqtt.Options{
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("component", "mochi"),
	})
	if err := broker.AddHook(new(auth.AllowHook), nil); err != nil {
		return fmt.Errorf("mochi allow-all hook: %w", err)
	}
	backend, err := mochi.Attach(broker, mochi.Options{})
	if err != nil {
		return err
	}
	if err := broker.Serve(); err != nil {
		return fmt.Errorf("mochi: %w", err)
	}
	ws := &mqttws.Handler{Backend: backend, Logger: log}
	opts.Apply(ws)
	var metrics http.Handler
	if opts.Metrics {
		metrics = options.MetricsHandler(ws)
	}

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		_ = broker.Close()
		return fmt.Errorf("cannot serve on -listen %s: %w", listen, err)
	}
	srv := &http.Server{
		Handler:           routes(path, ws, metrics, log),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	host := displayHost(ln.Addr())
	fmt.Printf("mqttws embedded: open http://%s/ (MQTT over WebSocket at ws://%s%s)\n", host, host, path)

	var serveErr error
	select {
	case <-ctx.Done():
		stop() // a second signal kills the program at once
		log.Info("shutting down")
	case err := <-served:
		serveErr = fmt.Errorf("http server: %w", err)
	}

	// http.Server.Shutdown leaves hijacked connections alone: the WebSocket
	// handler closes its own, which ends their broker clients.
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
	if err := broker.Close(); err != nil {
		errs = append(errs, fmt.Errorf("mochi close: %w", err))
	}
	return errors.Join(errs...)
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
