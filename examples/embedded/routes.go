package main

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/mqttws/mqttws/examples/internal/options"
)

// static holds the page: index.html and the MQTT.js browser bundle it loads.
//
//go:embed static
var static embed.FS

// routes returns the app: the MQTT over WebSocket endpoint at wsPath, the
// page and its files at /, and /config.js, which tells the page wsPath.
// Metrics are not here: they have a listener of their own (-metrics-listen).
func routes(wsPath string, ws http.Handler, log *slog.Logger) http.Handler {
	r := chi.NewRouter()
	r.Use(middleware.RequestLogger(requestLog{log}))
	r.Use(middleware.Recoverer)

	// The WebSocket route takes no timeout: its connection is hijacked and
	// lives on after ServeHTTP returns, and middleware.Timeout would write a
	// 504 on it when it fires.
	r.Handle(wsPath, ws)

	r.Group(func(r chi.Router) {
		r.Use(middleware.Timeout(30 * time.Second))
		r.Get("/config.js", configJS(wsPath))
		r.Handle("/*", http.FileServerFS(staticFS()))
	})
	return r
}

// configJS serves a script that gives the page the endpoint's path; the page
// builds the URL from its own location, so it works behind any host name.
func configJS(wsPath string) http.HandlerFunc {
	quoted, _ := json.Marshal(wsPath) // a string always marshals
	body := fmt.Sprintf("// Set by the server from its -path flag.\nconst MQTTWS_PATH = %s;\n", quoted)
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte(body))
	}
}

func staticFS() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // "static" is a valid path: cannot happen
	}
	return sub
}

// checkPath reports whether p is a URL path (see options.CheckPath) that
// can serve the WebSocket endpoint without hiding the page.
func checkPath(p string) error {
	if err := options.CheckPath(p); err != nil {
		return err
	}
	name := strings.TrimPrefix(p, "/")
	if _, err := fs.Stat(staticFS(), name); p == "/" || name == "config.js" || err == nil {
		return fmt.Errorf("-path %q is taken by the page: want another path, such as /mqtt", p)
	}
	return nil
}

// requestLog is a chi middleware.LogFormatter that logs each request as one
// slog line (to stderr, unlike middleware.Logger, which prints to stdout).
type requestLog struct{ log *slog.Logger }

func (f requestLog) NewLogEntry(r *http.Request) middleware.LogEntry {
	return requestEntry{f.log.With("method", r.Method, "path", r.URL.Path, "proto", r.Proto, "remote", r.RemoteAddr)}
}

type requestEntry struct{ log *slog.Logger }

func (e requestEntry) Write(status, bytes int, _ http.Header, elapsed time.Duration, _ any) {
	if status == 0 {
		// Nothing went through the ResponseWriter: here, the WebSocket
		// handler took the connection over (its 101 went out on the raw
		// connection), and the connection goes on.
		e.log.Info("http request", "status", "hijacked", "elapsed", elapsed)
		return
	}
	e.log.Info("http request", "status", status, "bytes", bytes, "elapsed", elapsed)
}

func (e requestEntry) Panic(v any, stack []byte) {
	e.log.Error("http handler panic", "panic", v, "stack", string(stack))
}
