package options

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mqttws/mqttws"
)

// ShutdownTimeout bounds a stop: the HTTP server's, then the WebSocket
// connections'.
const ShutdownTimeout = 10 * time.Second

// Serve serves handler on ln until SIGINT or SIGTERM, printing
// banner(host:port) as one line on stdout once it serves, then stops the
// HTTP server and, through http.Server.RegisterOnShutdown, the WebSocket
// connections of ws (closed with 1001), within ShutdownTimeout.
func Serve(ln net.Listener, handler http.Handler, ws *mqttws.Handler, log *slog.Logger, banner func(host string) string) error {
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second, // a handshake sent byte by byte is cut off
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	// http.Server.Shutdown leaves hijacked connections alone: have it start
	// the handler's own shutdown, which closes them with 1001.
	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wsDone := make(chan error, 1)
	srv.RegisterOnShutdown(func() { wsDone <- ws.Shutdown(sctx) })

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Println(banner(displayHost(ln.Addr())))

	var serveErr error
	select {
	case <-ctx.Done():
		stop() // a second signal kills the program at once
		log.Info("shutting down")
	case err := <-served:
		serveErr = fmt.Errorf("http server: %w", err)
	}

	timer := time.AfterFunc(ShutdownTimeout, cancel)
	defer timer.Stop()
	errs := []error{serveErr}
	if err := srv.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("http server shutdown: %w", err))
		_ = srv.Close()
	}
	if err := <-wsDone; err != nil {
		errs = append(errs, fmt.Errorf("closing WebSocket connections: %w", err))
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
