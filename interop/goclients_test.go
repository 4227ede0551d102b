package interop

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/eclipse/paho.golang/packets"
	paho5 "github.com/eclipse/paho.golang/paho"
	paho "github.com/eclipse/paho.mqtt.golang"
)

// goCase is a transfer between two Go clients of one library: a subscriber
// and a publisher, at one QoS, with one payload.
type goCase struct {
	name string
	qos  int
	size int
	seed uint32
}

// goResult is what the subscriber of a goCase received.
type goResult struct {
	err         error
	subprotocol string // "" where the library does not tell
	message     *message
}

// goTransfer runs a goCase on url, within ctx.
type goTransfer func(ctx context.Context, url string, c goCase) goResult

// goCaseTimeout bounds a Go transfer, connections included: 1 MiB takes
// mosquitto's own listener about 25 s (see nodeCaseTimeout).
const goCaseTimeout = 90 * time.Second

// goConcurrency is how many Go transfers run at once.
const goConcurrency = 8

// goCases returns a transfer per QoS and payload size.
func goCases() []goCase {
	var cases []goCase
	for _, q := range qosLevels {
		for _, n := range nodeSizes {
			name := fmt.Sprintf("qos%d/%s", q, sizeName(n))
			cases = append(cases, goCase{
				name: name,
				qos:  q,
				size: n,
				seed: seedOf(name),
			})
		}
	}
	return cases
}

// runGoClients runs every goCase with run against every target (the
// transfers of a target side by side, the largest payloads being slow on
// mosquitto's own listener), then judges each in a subtest.
func runGoClients(t *testing.T, run goTransfer, wantSubprotocol string) {
	targets := startTargets(t)
	cases := goCases()
	results := make([][]goResult, len(targets))
	var wg sync.WaitGroup
	sem := make(chan struct{}, goConcurrency)
	for i, tg := range targets {
		results[i] = make([]goResult, len(cases))
		for j, c := range cases {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				ctx, cancel := context.WithTimeout(context.Background(), goCaseTimeout)
				defer cancel()
				results[i][j] = run(ctx, tg.url, c)
			})
		}
	}
	wg.Wait()

	for i, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			for j, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					r := results[i][j]
					if r.err != nil {
						t.Fatal(r.err)
					}
					if wantSubprotocol != "" && r.subprotocol != wantSubprotocol {
						t.Errorf("negotiated subprotocol %q, want %q", r.subprotocol, wantSubprotocol)
					}
					wantMessage{topic: goTopic(c), qos: c.qos, size: c.size, seed: c.seed}.check(t, "subscriber", r.message)
				})
			}
		})
	}
}

func goTopic(c goCase) string { return "interop/go/" + c.name }

// TestPahoMQTTGolangGetsEveryMessageByteExact runs
// github.com/eclipse/paho.mqtt.golang (MQTT 3.1.1 over gorilla/websocket)
// against both examples and mosquitto's own listener.
func TestPahoMQTTGolangGetsEveryMessageByteExact(t *testing.T) {
	t.Parallel()
	runGoClients(t, pahoTransfer, "")
}

// TestPahoGolangMQTT5GetsEveryMessageByteExact runs
// github.com/eclipse/paho.golang (MQTT 5) over a net.Conn made by
// github.com/coder/websocket's NetConn, against both examples and
// mosquitto's own listener.
func TestPahoGolangMQTT5GetsEveryMessageByteExact(t *testing.T) {
	t.Parallel()
	runGoClients(t, paho5Transfer, "mqtt")
}

var clientSeq atomic.Int64

// clientID returns a client id unique in the test binary, of at most 23
// characters (MQTT 3.1 servers may refuse longer ones).
func clientID(role string) string {
	return fmt.Sprintf("go-%s-%d", role, clientSeq.Add(1))
}

// pahoTransfer is a goTransfer with paho.mqtt.golang.
func pahoTransfer(ctx context.Context, url string, c goCase) goResult {
	deadline, _ := ctx.Deadline()
	timeout := time.Until(deadline)
	connect := func(role string) (paho.Client, error) {
		opts := paho.NewClientOptions().
			AddBroker(url).
			SetClientID(clientID(role)).
			SetProtocolVersion(4). // 3.1.1, with no fallback to 3.1
			SetCleanSession(true).
			SetAutoReconnect(false).
			SetConnectRetry(false).
			SetConnectTimeout(timeout).
			SetWriteTimeout(timeout).
			SetKeepAlive(60 * time.Second)
		cl := paho.NewClient(opts)
		if err := waitToken(cl.Connect(), timeout); err != nil {
			return nil, fmt.Errorf("%s: connect: %w", role, err)
		}
		return cl, nil
	}
	sub, err := connect("sub")
	if err != nil {
		return goResult{err: err}
	}
	defer sub.Disconnect(250)
	pub, err := connect("pub")
	if err != nil {
		return goResult{err: err}
	}
	defer pub.Disconnect(250)

	got := make(chan *message, 1)
	topic := goTopic(c)
	err = waitToken(sub.Subscribe(topic, byte(c.qos), func(_ paho.Client, m paho.Message) {
		select {
		case got <- &message{Topic: m.Topic(), QoS: int(m.Qos()), Retain: m.Retained(), Len: len(m.Payload()), SHA256: sha256Hex(m.Payload())}:
		default:
		}
	}), timeout)
	if err != nil {
		return goResult{err: fmt.Errorf("subscribe: %w", err)}
	}
	if err := waitToken(pub.Publish(topic, byte(c.qos), false, payload(c.size, c.seed)), time.Until(deadline)); err != nil {
		return goResult{err: fmt.Errorf("publish: %w", err)}
	}
	select {
	case m := <-got:
		return goResult{message: m}
	case <-ctx.Done():
		return goResult{err: fmt.Errorf("no message within %v", goCaseTimeout)}
	}
}

func waitToken(tok paho.Token, timeout time.Duration) error {
	if !tok.WaitTimeout(timeout) {
		return fmt.Errorf("no answer within %v", timeout)
	}
	return tok.Error()
}

// paho5Transfer is a goTransfer with paho.golang over coder/websocket.
func paho5Transfer(ctx context.Context, url string, c goCase) goResult {
	got := make(chan *message, 1)
	sub, subprotocol, err := paho5Connect(ctx, url, "sub5", func(pr paho5.PublishReceived) (bool, error) {
		p := pr.Packet
		select {
		case got <- &message{Topic: p.Topic, QoS: int(p.QoS), Retain: p.Retain, Len: len(p.Payload), SHA256: sha256Hex(p.Payload)}:
		default:
		}
		return true, nil
	})
	if err != nil {
		return goResult{err: err}
	}
	defer sub.close()
	pub, _, err := paho5Connect(ctx, url, "pub5", nil)
	if err != nil {
		return goResult{err: err}
	}
	defer pub.close()

	topic := goTopic(c)
	suback, err := sub.Subscribe(ctx, &paho5.Subscribe{Subscriptions: []paho5.SubscribeOptions{{Topic: topic, QoS: byte(c.qos)}}})
	if err != nil {
		return goResult{err: fmt.Errorf("subscribe: %w", err)}
	}
	if len(suback.Reasons) != 1 || suback.Reasons[0] != byte(c.qos) {
		return goResult{err: fmt.Errorf("SUBACK reason codes %v, want [%d] (the QoS granted)", suback.Reasons, c.qos)}
	}
	resp, err := pub.Publish(ctx, &paho5.Publish{Topic: topic, QoS: byte(c.qos), Payload: payload(c.size, c.seed)})
	if err != nil {
		return goResult{err: fmt.Errorf("publish: %w", err)}
	}
	if c.qos > 0 && resp.ReasonCode >= 0x80 {
		return goResult{err: fmt.Errorf("publish: reason code %#x", resp.ReasonCode)}
	}
	select {
	case m := <-got:
		return goResult{subprotocol: subprotocol, message: m}
	case <-ctx.Done():
		return goResult{err: fmt.Errorf("no message within %v", goCaseTimeout)}
	}
}

// paho5Client is a connected paho.golang client and its WebSocket.
type paho5Client struct {
	*paho5.Client
	ws     *websocket.Conn
	cancel context.CancelFunc
}

// paho5Connect dials url offering subprotocol "mqtt", and connects an MQTT 5
// client over the WebSocket as a net.Conn.
func paho5Connect(ctx context.Context, url, role string, onPublish func(paho5.PublishReceived) (bool, error)) (*paho5Client, string, error) {
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"mqtt"}})
	if err != nil {
		return nil, "", fmt.Errorf("%s: WebSocket dial: %w", role, err)
	}
	// The net.Conn lives until close, not just for ctx.
	connCtx, cancel := context.WithCancel(context.Background())
	nc := websocket.NetConn(connCtx, c, websocket.MessageBinary)
	cfg := paho5.ClientConfig{
		ClientID: clientID(role),
		// paho.golang writes a packet in several Writes, from several
		// goroutines: its wrapper keeps each packet whole.
		Conn: packets.NewThreadSafeConn(nc),
	}
	if onPublish != nil {
		cfg.OnPublishReceived = []func(paho5.PublishReceived) (bool, error){onPublish}
	}
	cl := &paho5Client{Client: paho5.NewClient(cfg), ws: c, cancel: cancel}
	ca, err := cl.Connect(ctx, &paho5.Connect{ClientID: cfg.ClientID, KeepAlive: 60, CleanStart: true})
	if err == nil && ca.ReasonCode != 0 {
		err = fmt.Errorf("CONNACK reason code %#x", ca.ReasonCode)
	}
	if err != nil {
		_ = c.CloseNow()
		cancel()
		return nil, "", fmt.Errorf("%s: connect: %w", role, err)
	}
	return cl, c.Subprotocol(), nil
}

// close disconnects the client and waits, boundedly, for its goroutines.
func (c *paho5Client) close() {
	timer := time.NewTimer(5 * time.Second)
	defer timer.Stop()
	if c.Disconnect(&paho5.Disconnect{ReasonCode: 0}) == nil {
		select {
		case <-c.Done():
		case <-timer.C:
		}
	}
	_ = c.ws.CloseNow()
	c.cancel()
	select {
	case <-c.Done():
	case <-timer.C:
	}
}
