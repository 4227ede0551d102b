package backend_test

import (
	"crypto/tls"
	"net/http"
	"time"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/backend"
)

// A gateway to a broker cluster that takes TLS: each stream starts at the
// next node and fails over to the others. Frames over 1 MiB are refused and
// large messages go out in 64 KiB frames.
func ExampleDialer_tls() {
	h := &mqttws.Handler{
		Backend: &backend.Dialer{
			Addresses: []string{"broker-1.internal:8883", "broker-2.internal:8883"},
			TLSConfig: &tls.Config{ServerName: "broker.internal"},
			Timeout:   3 * time.Second,
		},
		MaxFrameSize:   1 << 20,
		WriteFrameSize: 64 << 10,
	}
	http.Handle("/mqtt", h)
}
