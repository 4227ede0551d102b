package mqttws_test

import (
	"context"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/backend"
)

// Serving wss:// (browsers on an https page must use it) and, when the
// program runs with GODEBUG=http2xconnect=1 (Go 1.26), WebSocket over
// HTTP/2 on the same TLS connections as the page.
func ExampleHandler_wss() {
	h := &mqttws.Handler{Backend: backend.Dial("127.0.0.1:1883")}
	srv := &http.Server{
		Addr:              ":8443",
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       30 * time.Second,
	}
	log.Fatal(srv.ListenAndServeTLS("cert.pem", "key.pem"))
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

// Compression for browsers and Node's ws, which offer permessage-deflate
// on every connection: with 1 KiB of history, small JSON messages that
// repeat the keys of the ones before shrink about 3.7× instead of 2×.
func ExampleCompressionOptions() {
	h := &mqttws.Handler{Backend: backend.Dial("127.0.0.1:1883")}
	h.Compression = &mqttws.CompressionOptions{History: 1024}
	http.Handle("/mqtt", h)
}
