package options

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Server holds the settings of the examples' HTTP servers: the flags, and
// the timeouts, which tests shorten. The zero value of Timeouts means
// DefaultTimeouts.
type Server struct {
	MaxConnsPerAddr int    // -max-conns-per-addr: see LimitPerAddr
	MetricsListen   string // -metrics-listen: empty for no metrics
	// TLSCert and TLSKey (-tls-cert, -tls-key) are the PEM files of the
	// certificate (with its chain) and private key of the public listener:
	// with them it serves HTTPS and wss, HTTP/2 included; without them,
	// plain HTTP and ws. TLSPoll (-tls-poll) is how often the files are
	// checked for a change, 0 for only on SIGHUP.
	TLSCert, TLSKey string
	TLSPoll         time.Duration
	Timeouts        Timeouts
}

// Register defines the flags on fs.
func (s *Server) Register(fs *flag.FlagSet) {
	fs.IntVar(&s.MaxConnsPerAddr, "max-conns-per-addr", DefaultMaxConnsPerAddr, "hold at most `N` TCP connections at once from one client address (an IPv6 client counts per /64), closing more as soon as they are accepted, so that one address cannot take every file descriptor; -trusted-proxy addresses are not counted (0: no cap)")
	fs.StringVar(&s.TLSCert, "tls-cert", "", "serve HTTPS and wss (and HTTP/2) on -listen with the certificate in the PEM `FILE`, its chain after it; needs -tls-key. The files are loaded again when they change (see -tls-poll) or on SIGHUP, without dropping connections")
	fs.StringVar(&s.TLSKey, "tls-key", "", "the PEM `FILE` of -tls-cert's private key")
	fs.DurationVar(&s.TLSPoll, "tls-poll", DefaultTLSPoll, "check -tls-cert and -tls-key for a change every `DURATION`, and load them again when they changed; a pair that does not load leaves the certificate in service (0: only on SIGHUP)")
	fs.StringVar(&s.MetricsListen, "metrics-listen", "", "serve Prometheus metrics at /metrics on `ADDR`, a listener of their own, such as 127.0.0.1:9090 (keep it on loopback or a private network: metrics tell about the host; its Host names are those of -allow-host); off unless given")
}

// Check reports flag values that make no sense.
func (s *Server) Check() error {
	if s.MaxConnsPerAddr < 0 {
		return fmt.Errorf("-max-conns-per-addr %d: want 0 or more", s.MaxConnsPerAddr)
	}
	switch {
	case s.TLSCert != "" && s.TLSKey == "":
		return fmt.Errorf("-tls-cert %s needs -tls-key, the file of its private key", s.TLSCert)
	case s.TLSKey != "" && s.TLSCert == "":
		return fmt.Errorf("-tls-key %s needs -tls-cert, the file of its certificate", s.TLSKey)
	case s.TLSPoll < 0:
		return fmt.Errorf("-tls-poll %v: want 0 or more", s.TLSPoll)
	}
	if s.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(s.MetricsListen); err != nil {
			return fmt.Errorf("-metrics-listen %q: want host:port, such as 127.0.0.1:9090: %w", s.MetricsListen, err)
		}
	}
	return nil
}

// TLS reports whether the public listener serves TLS.
func (s *Server) TLS() bool { return s.TLSCert != "" }

// Schemes returns the URL schemes of the public listener's pages and
// WebSocket endpoint: http and ws, or https and wss.
func (s *Server) Schemes() (web, ws string) {
	if s.TLS() {
		return "https", "wss"
	}
	return "http", "ws"
}

// Timeouts bound how long a client may hold an HTTP connection. None of
// them applies to a WebSocket connection once upgraded: mqttws.Handler
// clears the deadlines net/http set on the connection before the hijack
// (over HTTP/2, on the WebSocket's stream), and has timeouts of its own.
// Over TLS, the handshake must end within the shortest of ReadHeader, Read
// and Write.
type Timeouts struct {
	// ReadHeader bounds reading a request's header (a handshake sent byte by
	// byte is cut off).
	ReadHeader time.Duration
	// Read bounds reading a whole request. The examples take no bodies
	// (requests with one get 413), so it is only a backstop.
	Read time.Duration
	// Write bounds writing a plain HTTP response, from the end of its
	// request's header.
	Write time.Duration
	// Idle bounds the wait for the next request on a keep-alive connection.
	Idle time.Duration
	// Drain is how long plain HTTP requests still in progress at shutdown
	// may go on before their connections are closed.
	Drain time.Duration
	// Shutdown bounds closing the WebSocket connections at shutdown (with
	// 1001, waiting for the backends to end).
	Shutdown time.Duration
}

// DefaultTimeouts returns the timeouts the examples run with.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		ReadHeader: 10 * time.Second,
		Read:       15 * time.Second,
		Write:      30 * time.Second,
		Idle:       30 * time.Second,
		Drain:      500 * time.Millisecond,
		Shutdown:   10 * time.Second,
	}
}

// orDefaults returns t with each zero field set to its default.
func (t Timeouts) orDefaults() Timeouts {
	def := DefaultTimeouts()
	for _, f := range []struct{ v, def *time.Duration }{
		{&t.ReadHeader, &def.ReadHeader},
		{&t.Read, &def.Read},
		{&t.Write, &def.Write},
		{&t.Idle, &def.Idle},
		{&t.Drain, &def.Drain},
		{&t.Shutdown, &def.Shutdown},
	} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	return t
}

// MaxHeaderBytes bounds a request's header: 16 KiB, as in Node.js, holds a
// WebSocket handshake with its cookies; the 1 MB default of net/http let
// 300 connections with unfinished headers take 429 MB.
const MaxHeaderBytes = 16 << 10

// newHTTPServer returns an http.Server for handler with the timeouts t and
// the examples' limits.
func newHTTPServer(handler http.Handler, t Timeouts, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           refuseBodies(handler),
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(newConnErrorLog(log.Handler()), slog.LevelWarn),
	}
}
