// Package pahotest connects eclipse/paho.mqtt.golang clients through
// mqttws in tests and runs byte-exact transfers between them. It is a module
// of its own so that paho stays out of the root module's go.mod.
package pahotest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	neturl "net/url"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqttws/mqttws/internal/testbroker"
)

// pahoTimeout bounds each paho operation that has no deadline of its own.
const pahoTimeout = 10 * time.Second

// Connect connects a paho client to url ("ws://..." or "wss://...") with a
// clean session and no reconnection, and disconnects it when the test ends.
// onLost, when not nil, is called if the connection is lost.
func Connect(t testing.TB, url, clientID string, onLost func(error)) paho.Client {
	t.Helper()
	return ConnectOver(t, url, nil, clientID, onLost)
}

// OpenFunc opens the connection a paho client speaks MQTT over (for
// example a WebSocket on an HTTP/2 stream, which paho cannot open itself).
type OpenFunc func() (net.Conn, error)

// ConnectOver is Connect over a connection that open returns (nil: paho
// dials url itself).
func ConnectOver(t testing.TB, url string, open OpenFunc, clientID string, onLost func(error)) paho.Client {
	t.Helper()
	opts := paho.NewClientOptions().
		AddBroker(url).
		SetClientID(clientID).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(pahoTimeout).
		SetWriteTimeout(pahoTimeout).
		SetKeepAlive(30 * time.Second).
		SetOrderMatters(true)
	if open != nil {
		opts.SetCustomOpenConnectionFn(func(*neturl.URL, paho.ClientOptions) (net.Conn, error) { return open() })
	}
	if onLost != nil {
		opts.SetConnectionLostHandler(func(_ paho.Client, err error) { onLost(err) })
	}
	c := paho.NewClient(opts)
	wait(t, c.Connect(), "connect "+clientID+" to "+url)
	t.Cleanup(func() {
		if c.IsConnectionOpen() {
			c.Disconnect(250)
		}
	})
	return c
}

// wait waits for a paho token and fails the test if it fails or takes
// longer than pahoTimeout.
func wait(t testing.TB, tok paho.Token, what string) {
	t.Helper()
	if !tok.WaitTimeout(pahoTimeout) {
		t.Fatalf("%s: no answer within %v", what, pahoTimeout)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// Transfer is a run of messages from one paho client to another through
// the broker behind an mqttws handler.
type Transfer struct {
	QoS   byte
	Size  int // payload size in bytes
	Count int // messages
	// Timeout bounds the whole run, connections included.
	Timeout time.Duration
	// Open, when set, opens the clients' connections (see ConnectOver).
	Open OpenFunc
}

// endMarker is the payload of the message that follows the data messages:
// the broker keeps the order of messages of one QoS on one topic (MQTT
// 4.6.0), so once it arrives every message sent before it, and every
// duplicate, has arrived too.
var endMarker = []byte("mqttws: end of transfer")

// Run connects a subscriber and a publisher to url, publishes tr.Count
// seeded random payloads of tr.Size bytes at tr.QoS on a topic of the
// test's own, and fails the test unless the subscriber receives exactly
// them, byte for byte, on that topic, in order, within tr.Timeout.
func (tr Transfer) Run(t testing.TB, url string) {
	t.Helper()
	deadline := time.Now().Add(tr.Timeout)
	topic := "mqttws/test/" + strings.NewReplacer("+", "_", "#", "_").Replace(t.Name())
	payloads := RandomPayloads(uint64(tr.Size)<<8|uint64(tr.QoS), tr.Count, tr.Size)

	var (
		mu       sync.Mutex
		received []paho.Message
		done     = make(chan struct{})
	)
	sub := ConnectOver(t, url, tr.Open, testbroker.ClientID("sub"), nil)
	wait(t, sub.Subscribe(topic, tr.QoS, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		defer mu.Unlock()
		received = append(received, m)
		if len(received) == tr.Count+1 {
			close(done)
		}
	}), "subscribe to "+topic)

	pub := ConnectOver(t, url, tr.Open, testbroker.ClientID("pub"), nil)
	tokens := make([]paho.Token, 0, tr.Count+1)
	for _, p := range payloads {
		tokens = append(tokens, pub.Publish(topic, tr.QoS, false, p))
	}
	tokens = append(tokens, pub.Publish(topic, tr.QoS, false, endMarker))
	for i, tok := range tokens {
		if !tok.WaitTimeout(time.Until(deadline)) {
			t.Fatalf("QoS %d, %d-byte payloads: publish %d of %d not acknowledged within %v", tr.QoS, tr.Size, i+1, len(tokens), tr.Timeout)
		}
		if err := tok.Error(); err != nil {
			t.Fatalf("QoS %d, %d-byte payloads: publish %d of %d: %v", tr.QoS, tr.Size, i+1, len(tokens), err)
		}
	}

	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		mu.Lock()
		n := len(received)
		mu.Unlock()
		t.Fatalf("QoS %d, %d-byte payloads: the subscriber received %d of %d messages (%d and an end marker) within %v", tr.QoS, tr.Size, n, tr.Count+1, tr.Count, tr.Timeout)
	}

	mu.Lock()
	got := received
	mu.Unlock()
	for i, m := range got {
		want := endMarker
		if i < len(payloads) {
			want = payloads[i]
		}
		if m.Topic() != topic {
			t.Errorf("message %d: topic %q, want %q", i, m.Topic(), topic)
		}
		if !bytes.Equal(m.Payload(), want) {
			t.Errorf("QoS %d: message %d of %d: %s", tr.QoS, i+1, len(got), diff(m.Payload(), want))
		}
	}
}

// RandomPayloads returns count payloads of size bytes, the same for the
// same seed.
func RandomPayloads(seed uint64, count, size int) [][]byte {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	r := rand.NewChaCha8(s)
	out := make([][]byte, count)
	for i := range out {
		out[i] = make([]byte, size)
		_, _ = r.Read(out[i])
	}
	return out
}

// diff describes how got differs from want.
func diff(got, want []byte) string {
	if len(got) != len(want) {
		return fmt.Sprintf("payload of %d bytes, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			return fmt.Sprintf("payload differs from byte %d on (got %#x, want %#x)", i, got[i], want[i])
		}
	}
	return "payloads equal"
}

// RunTransfers runs a parallel subtest of Transfer.Run against url for each
// of testbroker.QoSLevels × testbroker.PayloadSizes.
func RunTransfers(t *testing.T, url string) {
	t.Helper()
	RunTransfersOver(t, url, nil)
}

// RunTransfersOver is RunTransfers with the clients' connections opened by
// open.
func RunTransfersOver(t *testing.T, url string, open OpenFunc) {
	t.Helper()
	for _, qos := range testbroker.QoSLevels {
		for _, size := range testbroker.PayloadSizes {
			t.Run(fmt.Sprintf("QoS%d/%s", qos, size.Name), func(t *testing.T) {
				t.Parallel()
				Transfer{
					QoS:     qos,
					Size:    size.Size,
					Count:   size.Count,
					Timeout: 30 * time.Second,
					Open:    open,
				}.Run(t, url)
			})
		}
	}
}
