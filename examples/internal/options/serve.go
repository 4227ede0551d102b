package options

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/mqttws/mqttws"
)

// App is what Serve serves.
type App struct {
	// Handler serves the public listener: the app's routes, the WebSocket
	// endpoint among them.
	Handler http.Handler
	// WS is the WebSocket endpoint's handler: its connections are closed
	// with 1001 at shutdown, its TrustedProxies are not counted by the cap
	// on connections per address, its AllowedHosts guard the metrics too,
	// and its Stats are the metrics.
	WS *mqttws.Handler
	// Log receives the servers' errors and the shutdown's steps.
	Log *slog.Logger
	// Ready, when not nil, is called once the app serves, with host:port of
	// the public listener for a URL.
	Ready func(host string)
}

// Serve serves app on ln, and its metrics on a listener of their own when
// s.MetricsListen is set, until ctx is done. It then stops: new connections
// are refused, idle ones closed, plain HTTP requests still in progress get
// s.Timeouts.Drain to finish before their connections are closed, and the
// WebSocket connections are closed with 1001 within s.Timeouts.Shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener, app App) error {
	t := s.Timeouts.orDefaults()
	log := app.Log
	servers := []*http.Server{newHTTPServer(app.Handler, t, log)}
	listeners := []net.Listener{LimitPerAddr(ln, s.MaxConnsPerAddr, app.WS.TrustedProxies, log)}
	if s.MetricsListen != "" {
		mln, err := net.Listen("tcp", s.MetricsListen)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("cannot serve metrics on -metrics-listen %s: %w", s.MetricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", MetricsHandler(app.WS))
		metrics := http.Handler(mux)
		if len(app.WS.AllowedHosts) > 0 {
			// A DNS rebinding page could read them otherwise.
			hosts, err := AllowedHosts(mln.Addr(), app.WS.AllowedHosts)
			if err != nil {
				_ = ln.Close()
				_ = mln.Close()
				return err
			}
			metrics = guardHosts(hosts, mux)
		}
		servers = append(servers, newHTTPServer(metrics, t, log))
		listeners = append(listeners, LimitPerAddr(mln, s.MaxConnsPerAddr, nil, log))
		log.Info("serving metrics", "url", "http://"+displayHost(mln.Addr())+"/metrics")
	}

	// http.Server.Shutdown leaves hijacked connections alone: have it start
	// the handler's own shutdown, which closes them with 1001.
	wsCtx, cancelWS := context.WithCancel(context.Background())
	defer cancelWS()
	wsDone := make(chan error, 1)
	servers[0].RegisterOnShutdown(func() { wsDone <- app.WS.Shutdown(wsCtx) })

	served := make(chan error, len(servers))
	for i, srv := range servers {
		go func() { served <- srv.Serve(listeners[i]) }()
	}
	if app.Ready != nil {
		app.Ready(displayHost(ln.Addr()))
	}

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-served:
		serveErr = fmt.Errorf("http server: %w", err)
	}

	// The WebSocket connections get t.Shutdown from now to close.
	timer := time.AfterFunc(t.Shutdown, cancelWS)
	defer timer.Stop()
	var wg sync.WaitGroup
	for _, srv := range servers {
		wg.Go(func() { drain(srv, t.Drain, log) })
	}
	wg.Wait()
	var wsErr error
	if err := <-wsDone; err != nil {
		wsErr = fmt.Errorf("closing WebSocket connections: %w", err)
	}
	return errors.Join(serveErr, wsErr)
}

// drain shuts srv down: its listener and idle connections close at once,
// requests in progress get d to finish, then what is left is closed. A
// connection held by a slow or silent client is no error at shutdown.
func drain(srv *http.Server, d time.Duration, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Info("closing HTTP connections still busy at shutdown", "drain", d, "err", err)
		_ = srv.Close()
	}
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
