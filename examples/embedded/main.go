package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/backend/mochi"
	"github.com/mqttws/mqttws/examples/internal/options"
)

// config is the program's configuration, from its flags.
type config struct {
	listen     string
	path       string
	maxMessage int
	handler    options.Handler
	server     options.Server
}

func main() {
	var cfg config
	flag.StringVar(&cfg.listen, "listen", "127.0.0.1:8080", "`address` to serve HTTP on")
	flag.StringVar(&cfg.path, "path", "/mqtt", "URL `path` of the MQTT over WebSocket endpoint")
	flag.IntVar(&cfg.maxMessage, "max-message", DefaultMaxMessage, "refuse MQTT packets (a PUBLISH with its topic and payload) over `BYTES`, disconnecting their sender; the broker keeps at most 128 packets for a client that does not read or acknowledge, so one such client pins up to 128 × BYTES: raise it with care")
	cfg.handler.Register(flag.CommandLine)
	cfg.server.Register(flag.CommandLine)
	options.SetUsage("embedded", "an MQTT broker (mochi) inside a go-chi web app, served over WebSocket next to a chat page", "embedded [-listen ADDR] [-path /mqtt] [-tls-cert FILE -tls-key FILE] [flags]")
	flag.Parse()
	if flag.NArg() > 0 {
		options.UsageError("embedded", fmt.Sprintf("unexpected argument %q", flag.Arg(0)))
	}
	for _, check := range []func() error{
		func() error { return checkPath(cfg.path) },
		func() error { return checkMaxMessage(cfg.maxMessage) },
		cfg.handler.Check,
		cfg.server.Check,
	} {
		if err := check(); err != nil {
			options.UsageError("embedded", err.Error())
		}
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop) // a second signal kills the program at once
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		log.Error(fmt.Sprintf("embedded: cannot serve on -listen %s: %v", cfg.listen, err))
		os.Exit(1)
	}
	web, ws := cfg.server.Schemes()
	err = run(ctx, ln, cfg, log, func(host string) {
		fmt.Printf("mqttws embedded: open %s://%s/ (MQTT over WebSocket at %s://%s%s)\n", web, host, ws, host, cfg.path)
	})
	if err != nil {
		log.Error("embedded: " + err.Error())
		os.Exit(1)
	}
}

// run serves on ln until ctx is done, then stops everything in order. ready
// is called once it serves, with the host:port of its URLs.
func run(ctx context.Context, ln net.Listener, cfg config, log *slog.Logger, ready func(host string)) error {
	broker := mqtt.New(brokerOptions(cfg.maxMessage))
	if err := broker.AddHook(new(auth.AllowHook), nil); err != nil {
		_ = ln.Close()
		return fmt.Errorf("mochi allow-all hook: %w", err)
	}
	serving := new(servingHook)
	if err := broker.AddHook(serving, nil); err != nil {
		_ = ln.Close()
		return fmt.Errorf("mochi serving hook: %w", err)
	}
	backend, err := mochi.Attach(broker, mochi.Options{})
	if err != nil {
		_ = ln.Close()
		return err
	}
	if err := broker.Serve(); err != nil {
		_ = ln.Close()
		return fmt.Errorf("mochi: %w", err)
	}
	ws := &mqttws.Handler{Backend: backend, Logger: log}
	if err := cfg.handler.Apply(ws, ln.Addr()); err != nil {
		_ = ln.Close()
		_ = broker.Close()
		return err
	}
	err = cfg.server.Serve(ctx, ln, options.App{
		Handler:   routes(cfg.path, ws, log),
		WS:        ws,
		Log:       log,
		Ready:     ready,
		Readiness: serving.ready,
	})
	// The broker goes last: the WebSocket connections are closed by now.
	if cerr := broker.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("mochi close: %w", cerr))
	}
	return err
}
