package interop

import (
	"bytes"
	"crypto/tls"
	"path/filepath"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/gobwas/ws"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/backend"
	"github.com/mqttws/mqttws/internal/pahotest"
	"github.com/mqttws/mqttws/internal/testbroker"
)

// The tests of backend.Dialer that need paho clients (backend's own tests
// use raw MQTT packets, so that paho stays out of the root module).

// serveDialer serves a Handler relaying to d.
func serveDialer(t *testing.T, d *backend.Dialer) *testbroker.Server {
	t.Helper()
	return testbroker.Serve(t, &mqttws.Handler{Backend: d})
}

func TestPublishedPayloadsArriveByteExact(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// dialer starts a broker and returns a Dialer for it.
		dialer func(t *testing.T) *backend.Dialer
	}{
		{
			name: "tcp",
			dialer: func(t *testing.T) *backend.Dialer {
				return backend.Dial(testbroker.StartMosquitto(t))
			},
		},
		{
			name: "unix",
			dialer: func(t *testing.T) *backend.Dialer {
				m := testbroker.Start(t, testbroker.Options{
					UnixSocket: filepath.Join(t.TempDir(), "mosquitto.sock"),
				})
				return &backend.Dialer{Network: "unix", Addresses: []string{m.UnixSocket}}
			},
		},
		{
			name: "tls",
			dialer: func(t *testing.T) *backend.Dialer {
				cert := testbroker.SelfSignedCert(t)
				m := testbroker.Start(t, testbroker.Options{
					CertFile: cert.CertFile,
					KeyFile:  cert.KeyFile,
				})
				return &backend.Dialer{
					Addresses: []string{m.Addr},
					TLSConfig: &tls.Config{RootCAs: cert.Pool},
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pahotest.RunTransfers(t, serveDialer(t, tt.dialer(t)).URL)
		})
	}
}

func TestClientCloseFrameEndsBrokerConnectionAfterItsData(t *testing.T) {
	t.Parallel()
	srv := serveDialer(t, backend.Dial(testbroker.StartMosquitto(t)))
	id := testbroker.ClientID("last")
	topic := "mqttws/test/" + id
	got := make(chan paho.Message, 10)
	sub := pahotest.Connect(t, srv.URL, testbroker.ClientID("last-sub"), nil)
	onMessage := func(_ paho.Client, m paho.Message) {
		select {
		case got <- m:
		default: // never block paho's router
		}
	}
	if tok := sub.Subscribe(topic+"/#", 0, onMessage); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe to %s/#: %v", topic, tok.Error())
	}

	// A PUBLISH right before the close frame must reach the broker before
	// the end of stream does; the broker then publishes the will, as the
	// connection ended without DISCONNECT.
	c := testbroker.DialWS(t, srv.URL)
	will := []byte("gone")
	if err := c.WriteFrame(ws.NewBinaryFrame(testbroker.ConnectPacketWithWill(id, 60, topic+"/will", will))); err != nil {
		t.Fatal(err)
	}
	c.ExpectData(t, testbroker.ConnackAccepted)
	last := []byte("last words")
	if err := c.WriteFrame(ws.NewBinaryFrame(testbroker.PublishPacket(topic+"/data", last))); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye"))); err != nil {
		t.Fatal(err)
	}
	c.ExpectClose(t, mqttws.CloseNormal, 5*time.Second)

	for _, want := range []struct {
		topic   string
		payload []byte
	}{
		{
			topic:   topic + "/data",
			payload: last,
		},
		{
			topic:   topic + "/will",
			payload: will,
		},
	} {
		select {
		case m := <-got:
			if m.Topic() != want.topic || !bytes.Equal(m.Payload(), want.payload) {
				t.Errorf("message %q on %s, want %q on %s", m.Payload(), m.Topic(), want.payload, want.topic)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no message on %s within 5s of the client's close frame", want.topic)
		}
	}
	// The subscriber is still connected.
	srv.WaitActiveStreams(1, 5*time.Second)
}
