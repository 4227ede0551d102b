package mqttws_test

import (
	"context"
	"errors"
	"log"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/backend"
)

// A WebSocket gateway in front of an existing broker, on a plain ServeMux,
// with the http.Server settings a server facing the internet needs: every
// WebSocket connection to /mqtt becomes a TCP connection to the broker.
func ExampleHandler() {
	h := &mqttws.Handler{
		Backend:      backend.Dial("127.0.0.1:1883"),
		AllowedHosts: []string{"localhost", "mqtt.example.com"},
	}
	mux := http.NewServeMux()
	mux.Handle("/mqtt", h)

	srv := &http.Server{
		Addr:              "localhost:8080",
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second, // a handshake sent byte by byte
		ReadTimeout:       15 * time.Second, // a request body that never comes
		WriteTimeout:      30 * time.Second, // plain answers to clients that do not read
		IdleTimeout:       30 * time.Second, // keep-alive connections after a 404
		MaxHeaderBytes:    16 << 10,
	}
	// srv.Shutdown leaves hijacked connections alone: close them too.
	srv.RegisterOnShutdown(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = h.Shutdown(ctx)
	})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
