package options

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
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
	// Readiness, when not nil, tells whether the app can serve MQTT
	// clients now, for ReadyPath: nil when it can, an error (an *Unready
	// for a reason to give) when it cannot. It gets ReadyTimeout.
	Readiness func(context.Context) error
}

// Serve serves app on ln, with the health checks (HealthPath, ReadyPath),
// over TLS when s.TLS(), and its metrics on a listener of their own when
// s.MetricsListen is set, until ctx is done. It then stops: new connections
// are refused, idle ones closed, plain HTTP requests still in progress get
// s.Timeouts.Drain to finish before their connections are closed, and the
// WebSocket connections are closed with 1001 within s.Timeouts.Shutdown.
//
// Over TLS, the certificate files are loaded again when they change
// (s.TLSPoll) and on SIGHUP; pages are served over HTTP/2 or HTTP/1.1, as
// the client prefers, and WebSockets over HTTP/2 too when the environment
// says GODEBUG=http2xconnect=1 (see http2WebSockets).
func (s *Server) Serve(ctx context.Context, ln net.Listener, app App) error {
	t := s.Timeouts.orDefaults()
	log := app.Log
	var certs *certSource
	if s.TLS() {
		var err error
		if certs, err = newCertSource(s.TLSCert, s.TLSKey, log); err != nil {
			_ = ln.Close()
			return fmt.Errorf("cannot load the TLS certificate: %w", err)
		}
	}
	public := newHTTPServer(withHealth(ctx, app.Readiness, log, app.Handler), t, log)
	if certs != nil {
		// http.Server.ServeTLS adds HTTP/2 to it (ALPN h2 and http/1.1).
		public.TLSConfig = &tls.Config{
			GetCertificate: certs.getCertificate,
			MinVersion:     tls.VersionTLS12,
		}
	}
	servers := []*http.Server{public}
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
	// the handler's own shutdown, which closes them with 1001. WebSockets
	// over HTTP/2 are requests in progress on their connection, which
	// Shutdown waits for: they too end with the handler's shutdown.
	wsCtx, cancelWS := context.WithCancel(context.Background())
	defer cancelWS()
	wsDone := make(chan error, 1)
	wsClosed := make(chan struct{})
	public.RegisterOnShutdown(func() {
		wsDone <- app.WS.Shutdown(wsCtx)
		close(wsClosed)
	})

	var watching sync.WaitGroup
	if certs != nil {
		// Registered before the program says it serves: a SIGHUP that comes
		// after that line reloads, never kills.
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		watchCtx, stopWatching := context.WithCancel(ctx)
		defer watching.Wait()
		defer stopWatching()
		watching.Go(func() { certs.watch(watchCtx, s.TLSPoll, hup) })
	}
	on, why := http2WebSockets(certs != nil, os.Getenv("GODEBUG"))
	state := "off"
	if on {
		state = "on"
	}
	log.Info("WebSocket over HTTP/2: "+state, "why", why)

	served := make(chan error, len(servers))
	for i, srv := range servers {
		go func() {
			if srv == public && certs != nil {
				served <- srv.ServeTLS(listeners[i], "", "")
				return
			}
			served <- srv.Serve(listeners[i])
		}()
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
		var ws <-chan struct{}
		if srv == public && certs != nil {
			ws = wsClosed // HTTP/2 is on
		}
		wg.Go(func() { drain(srv, t.Drain, ws, log) })
	}
	wg.Wait()
	var wsErr error
	if err := <-wsDone; err != nil {
		wsErr = fmt.Errorf("closing WebSocket connections: %w", err)
	}
	return errors.Join(serveErr, wsErr)
}

// drain shuts srv down: its listener and idle connections close at once,
// requests in progress get d to finish, and those of its WebSockets (over
// HTTP/2) until ws is closed, then what is left is closed. A connection
// held by a slow or silent client is no error at shutdown.
func drain(srv *http.Server, d time.Duration, ws <-chan struct{}, log *slog.Logger) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-ctx.Done():
			return
		}
		if ws != nil {
			select {
			case <-ws:
			case <-ctx.Done():
				return
			}
		}
		cancel()
	}()
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
