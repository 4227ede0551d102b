package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/backend/mochi"
	"github.com/mqttws/mqttws/examples/internal/options"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "`address` to serve HTTP on")
	path := flag.String("path", "/mqtt", "URL `path` of the MQTT over WebSocket endpoint")
	var opts options.Handler
	opts.Register(flag.CommandLine)
	flag.Parse()
	if flag.NArg() > 0 {
		options.UsageError("embedded", fmt.Sprintf("unexpected argument %q", flag.Arg(0)))
	}
	if err := checkPath(*path); err != nil {
		options.UsageError("embedded", err.Error())
	}
	if err := opts.Check(); err != nil {
		options.UsageError("embedded", err.Error())
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	slog.SetDefault(log)
	if err := run(*listen, *path, opts, log); err != nil {
		log.Error("embedded: " + err.Error())
		os.Exit(1)
	}
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
	err = options.Serve(ln, routes(path, ws, metrics, log), ws, log, func(host string) string {
		return fmt.Sprintf("mqttws embedded: open http://%s/ (MQTT over WebSocket at ws://%s%s)", host, host, path)
	})
	// The broker goes last: the WebSocket connections are closed by now.
	if cerr := broker.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("mochi close: %w", cerr))
	}
	return err
}
