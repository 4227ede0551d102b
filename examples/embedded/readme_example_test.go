package main

import (
	"log"
	"net/http"

	"github.com/go-chi/chi/v5"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/backend/mochi"
)

// A chi app with mochi-mqtt in the same process: the README's first
// snippet, compiled by go test.
func Example_chiWithMochi() {
	broker := mqtt.New(&mqtt.Options{
		InlineClient: true,
		// Bound what a client that does not read can pin (see the README).
		Capabilities: func() *mqtt.Capabilities {
			c := mqtt.NewDefaultServerCapabilities()
			c.MaximumClientWritesPending = 64
			c.MaximumInflight = 64
			c.MaximumPacketSize = 128 << 10
			return c
		}(),
	})
	if err := broker.AddHook(new(auth.AllowHook), nil); err != nil { // allow all: replace with real auth
		log.Fatal(err)
	}
	b, err := mochi.Attach(broker, mochi.Options{}) // before broker.Serve
	if err != nil {
		log.Fatal(err)
	}
	if err := broker.Serve(); err != nil { // Serve does not block
		log.Fatal(err)
	}

	r := chi.NewRouter()
	r.Handle("/mqtt", &mqttws.Handler{
		Backend:      b,
		AllowedHosts: []string{"localhost", "app.example.com"},
	})
	log.Fatal(http.ListenAndServe("localhost:8080", r))
}
