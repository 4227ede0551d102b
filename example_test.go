package mqttws_test

import (
	"context"
	"crypto/tls"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/backend"
)

// A WebSocket gateway in front of an existing broker, on a plain ServeMux:
// every WebSocket connection to /mqtt becomes a TCP connection to the broker.
func ExampleHandler() {
	h := &mqttws.Handler{Backend: backend.Dial("127.0.0.1:1883")}
	mux := http.NewServeMux()
	mux.Handle("/mqtt", h)

	srv := &http.Server{Addr: "127.0.0.1:8080", Handler: mux}
	// Hijacked connections are not closed by srv.Shutdown: close them too.
	srv.RegisterOnShutdown(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = h.Shutdown(ctx)
	})
	log.Fatal(srv.ListenAndServe())
}

// A gateway to a broker that takes TLS, refusing frames over 1 MiB and
// splitting large messages into 64 KiB frames.
func ExampleHandler_tls() {
	h := &mqttws.Handler{
		Backend: &backend.Dialer{
			Addresses: []string{"broker.internal:8883"},
			TLSConfig: &tls.Config{ServerName: "broker.internal"},
			Timeout:   3 * time.Second,
		},
		MaxFrameSize:   1 << 20,
		WriteFrameSize: 64 << 10,
	}
	http.Handle("/mqtt", h)
}

// A backend written as a function: here, one that logs each client and then
// relays it to a broker.
func ExampleBackendFunc() {
	gateway := backend.Dial("127.0.0.1:1883")
	h := &mqttws.Handler{
		Backend: mqttws.BackendFunc(func(ctx context.Context, conn net.Conn) error {
			s := conn.(*mqttws.Stream)
			log.Printf("MQTT client from %s speaking %q", s.RemoteAddr(), s.Subprotocol())
			return gateway.ServeStream(ctx, conn)
		}),
	}
	http.Handle("/mqtt", h)
}

// A backend chooses the close code the client sees by returning a
// *CloseError.
func ExampleCloseError() {
	h := &mqttws.Handler{
		Backend: mqttws.BackendFunc(func(ctx context.Context, conn net.Conn) error {
			return &mqttws.CloseError{Code: mqttws.CloseTryAgainLater, Reason: "maintenance"}
		}),
	}
	http.Handle("/mqtt", h)
}
