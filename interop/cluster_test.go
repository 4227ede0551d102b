package interop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	neturl "net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/backend"
	"github.com/mqttws/mqttws/internal/testbroker"
)

// The gateway in front of a 3-node NATS Server cluster (see nats_test.go):
// clients spread over the nodes through one URL, messages cross nodes, and
// a node fails while QoS 1 traffic flows.

// Bounds of the failover test. A client on a node that fails is back,
// through the gateway, on a node that is up within reconnectBound of losing
// its connection: its keepalive (3s, then 3s for the PINGRESP) tells it of
// a frozen or black-holed node, paho waits up to 2s between attempts, the
// gateway gives a hung node ConnackTimeout (10s) and a black hole Timeout
// (3s), and NATS itself answers a CONNECT, or closes it, after up to its 5s
// JetStream API timeout while it elects leaders. A new client gets in within
// newClientBound.
const (
	reconnectBound    = 30 * time.Second
	trafficAfterFault = 10 * time.Second
	newClientBound    = 45 * time.Second
	clusterKeepAlive  = 3 // seconds
	publishInterval   = 20 * time.Millisecond
	clusterTopic      = "mqttws/cluster/"
)

// nodeFault is a way for a node to fail.
type nodeFault struct {
	name string
	// viaProxy puts the node behind a testbroker.Proxy, which black-holes.
	viaProxy bool
	apply    func(t *testing.T, n *natsNode, p *testbroker.Proxy)
}

var nodeFaults = []nodeFault{
	{
		name:  "killed",
		apply: func(t *testing.T, n *natsNode, _ *testbroker.Proxy) { n.signal(t, syscall.SIGKILL) },
	},
	{
		name:  "frozen",
		apply: func(t *testing.T, n *natsNode, _ *testbroker.Proxy) { n.signal(t, syscall.SIGSTOP) },
	},
	{
		name:     "black-holed",
		viaProxy: true,
		apply:    func(t *testing.T, _ *natsNode, p *testbroker.Proxy) { p.BlackHole(t) },
	},
}

// TestNATSClusterFailoverThroughTheGateway runs, for each way a node can
// fail, a 3-node NATS cluster behind one mqttws.Handler and backend.Dialer
// (their defaults): three publishers and three subscribers with persistent
// sessions, one of each per node, QoS 1; every subscriber gets every
// publisher's messages across nodes. Then the first node fails: every client
// that loses its connection is back within reconnectBound, through the same
// URL, on a node that is up; new clients get in; and once publishing stops,
// every acknowledged message reached every subscriber. It logs the counts:
// published, delivered, lost, duplicated (NATS resends unacknowledged
// messages after its own timeouts: duplicates are NATS's, and QoS 1 allows
// them).
func TestNATSClusterFailoverThroughTheGateway(t *testing.T) {
	natsServerPath(t) // fails at once, with the install command, when missing
	for _, f := range nodeFaults {
		t.Run(f.name, func(t *testing.T) { runFailover(t, f) })
	}
}

func runFailover(t *testing.T, fault nodeFault) {
	cluster := startNATSCluster(t, 3)
	addrs := make([]string, len(cluster.nodes))
	for i, n := range cluster.nodes {
		addrs[i] = n.mqtt
	}
	var proxy *testbroker.Proxy
	if fault.viaProxy {
		proxy = testbroker.StartProxy(t, addrs[0])
		addrs[0] = proxy.Addr
	}
	dialer := &backend.Dialer{Addresses: addrs, Logger: testbroker.Logger(t)}
	srv := testbroker.Serve(t, &mqttws.Handler{Backend: dialer})

	// The Dialer sends streams to the nodes in turn: publisher i and
	// subscriber i land on node i.
	run := newFailoverRun(t, srv.URL)
	for i := range 3 {
		run.pubs = append(run.pubs, run.connect(fmt.Sprintf("pub%d", i)))
	}
	for i := range 3 {
		run.subs = append(run.subs, run.connect(fmt.Sprintf("sub%d", i)))
	}
	for i, n := range cluster.nodes {
		got := n.mqttClients(t)
		want := []string{run.pubs[i].id, run.subs[i].id}
		if !slices.Equal(got, want) {
			t.Fatalf("node %s serves MQTT clients %v, want %v: the gateway spreads clients in turn", n.name, got, want)
		}
	}
	run.startPublishing()
	run.waitCrossNode()

	faultAt := time.Now()
	fault.apply(t, cluster.nodes[0], proxy)
	t.Logf("node %s %s at %s", cluster.nodes[0].name, fault.name, faultAt.Format("15:04:05.000"))
	newClients := run.connectNewClients(6, 250*time.Millisecond)

	// The clients of the failed node lose their connection (at once when
	// it is killed, by their keepalive otherwise) and come back: on a node
	// that is up, since only such a node sends a CONNACK.
	victims := []*clusterClient{run.pubs[0], run.subs[0]}
	for _, c := range victims {
		c.waitReconnected(t, faultAt, reconnectBound+time.Duration(2*clusterKeepAlive)*time.Second)
	}
	run.waitEveryoneConnected(reconnectBound)
	// Traffic goes on while the cluster recovers (NATS moves the leaders
	// of its streams off the failed node), and a little after.
	time.Sleep(max(time.Until(faultAt.Add(trafficAfterFault)), 0) + 2*time.Second)
	run.stopPublishing()
	<-newClients

	run.report(faultAt)
}

// clusterClient is a paho client of the failover test, with a persistent
// session and automatic reconnection.
type clusterClient struct {
	id     string
	client paho.Client

	mu       sync.Mutex
	connects []time.Time // each CONNACK
	losses   []time.Time // each lost connection
	lossErrs []error
	received map[string]int // by "publisher:sequence", for a subscriber
}

type failoverRun struct {
	t    *testing.T
	url  string
	pubs []*clusterClient
	subs []*clusterClient

	stop       chan struct{}
	publishWG  sync.WaitGroup
	mu         sync.Mutex
	published  []publishedMessage
	newClients []newClient
}

type publishedMessage struct {
	key   string
	token paho.Token
}

func newFailoverRun(t *testing.T, url string) *failoverRun {
	r := &failoverRun{t: t, url: url, stop: make(chan struct{})}
	t.Cleanup(func() {
		select {
		case <-r.stop:
		default:
			close(r.stop)
		}
		r.publishWG.Wait()
		for _, c := range append(slices.Clone(r.pubs), r.subs...) {
			c.client.Disconnect(100)
		}
	})
	return r
}

// connect connects a client with a persistent session, subscribing when
// its role is "sub".
func (r *failoverRun) connect(role string) *clusterClient {
	r.t.Helper()
	c := &clusterClient{id: testbroker.ClientID(role), received: make(map[string]int)}
	opts := paho.NewClientOptions().
		AddBroker(r.url).
		SetCustomOpenConnectionFn(openWebSocket).
		SetProtocolVersion(4).
		SetClientID(c.id).
		SetCleanSession(false).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(2 * time.Second).
		SetConnectTimeout(20 * time.Second).
		SetWriteTimeout(10 * time.Second).
		SetKeepAlive(clusterKeepAlive * time.Second).
		SetPingTimeout(clusterKeepAlive * time.Second).
		SetOrderMatters(false).
		SetResumeSubs(true).
		SetOnConnectHandler(func(paho.Client) {
			c.mu.Lock()
			c.connects = append(c.connects, time.Now())
			c.mu.Unlock()
		}).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			c.mu.Lock()
			c.losses = append(c.losses, time.Now())
			c.lossErrs = append(c.lossErrs, err)
			c.mu.Unlock()
		})
	c.client = paho.NewClient(opts)
	if tok := c.client.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		r.t.Fatalf("connect %s through the gateway: %v", c.id, tok.Error())
	}
	if strings.HasPrefix(role, "sub") {
		tok := c.client.Subscribe(clusterTopic+"#", 1, func(_ paho.Client, m paho.Message) {
			c.mu.Lock()
			c.received[string(m.Payload())]++
			c.mu.Unlock()
		})
		if !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
			r.t.Fatalf("subscribe %s: %v", c.id, tok.Error())
		}
	}
	return c
}

// openWebSocket opens paho's connection with coder/websocket: paho's own
// WebSocket connector (gorilla) sets a write deadline while its keepalive
// writes a PINGREQ, a data race that the race detector reports once pings
// and publishes overlap, as they do here.
func openWebSocket(u *neturl.URL, _ paho.ClientOptions) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{Subprotocols: []string{"mqtt"}})
	if err != nil {
		return nil, err
	}
	return websocket.NetConn(context.Background(), c, websocket.MessageBinary), nil
}

// startPublishing has each publisher publish a QoS 1 message every
// publishInterval, payload "publisher:sequence", until stopPublishing.
func (r *failoverRun) startPublishing() {
	for i, p := range r.pubs {
		r.publishWG.Add(1)
		go func() {
			defer r.publishWG.Done()
			tick := time.NewTicker(publishInterval)
			defer tick.Stop()
			for seq := 0; ; seq++ {
				select {
				case <-r.stop:
					return
				case <-tick.C:
				}
				key := strconv.Itoa(i) + ":" + strconv.Itoa(seq)
				tok := p.client.Publish(clusterTopic+strconv.Itoa(i), 1, false, key)
				r.mu.Lock()
				r.published = append(r.published, publishedMessage{key: key, token: tok})
				r.mu.Unlock()
			}
		}()
	}
}

func (r *failoverRun) stopPublishing() {
	close(r.stop)
	r.publishWG.Wait()
}

// waitCrossNode waits until every subscriber got a message from every
// publisher: from its own node and from the two others.
func (r *failoverRun) waitCrossNode() {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, s := range r.subs {
		for i := range r.pubs {
			for !s.gotFrom(i) {
				if time.Now().After(deadline) {
					r.t.Fatalf("%s got no message from %s within 20s", s.id, r.pubs[i].id)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
}

func (c *clusterClient) gotFrom(pub int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	prefix := strconv.Itoa(pub) + ":"
	for k := range c.received {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

// connectNewClients connects n new clients through the gateway, one every
// interval. Each tries again a second after a failed attempt, as clients
// do (NATS refuses every new session while it elects the leader of its
// session stream), and must get in within newClientBound. The channel
// closes once all are done.
func (r *failoverRun) connectNewClients(n int, interval time.Duration) <-chan struct{} {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * interval)
			id := testbroker.ClientID("new")
			start := time.Now()
			var errs []string
			for {
				c := paho.NewClient(paho.NewClientOptions().
					AddBroker(r.url).
					SetCustomOpenConnectionFn(openWebSocket).
					SetProtocolVersion(4).
					SetClientID(id).
					SetCleanSession(true).
					SetAutoReconnect(false).
					SetConnectTimeout(newClientBound).
					SetKeepAlive(clusterKeepAlive * time.Second))
				tok := c.Connect()
				if tok.WaitTimeout(newClientBound) && tok.Error() == nil {
					c.Disconnect(100)
					break
				}
				errs = append(errs, fmt.Sprint(tok.Error()))
				if time.Since(start) > newClientBound {
					r.t.Errorf("new client %s did not get in within %v: %v", id, newClientBound, errs)
					return
				}
				time.Sleep(time.Second)
			}
			r.mu.Lock()
			r.newClients = append(r.newClients, newClient{took: time.Since(start), failed: errs})
			r.mu.Unlock()
		}()
	}
	go func() {
		wg.Wait()
		close(done)
	}()
	return done
}

// newClient is how a new client got in.
type newClient struct {
	took   time.Duration
	failed []string // the attempts that failed first
}

// waitReconnected waits until c, which is to lose its connection after
// since, has lost it and connected again, within bound of since.
func (c *clusterClient) waitReconnected(t *testing.T, since time.Time, bound time.Duration) {
	t.Helper()
	deadline := since.Add(bound)
	for {
		c.mu.Lock()
		lost, back := c.lossAfter(since)
		errs := slices.Clone(c.lossErrs)
		c.mu.Unlock()
		if !lost.IsZero() && !back.IsZero() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: lost its connection at %v, back at %v, %v after the fault (errors %v); want back within %v",
				c.id, clock(lost), clock(back), bound, errs, bound)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lossAfter returns the first loss after since and the first connect after
// it (zero if none). Call with c.mu held.
func (c *clusterClient) lossAfter(since time.Time) (lost, back time.Time) {
	for _, l := range c.losses {
		if l.After(since) {
			lost = l
			break
		}
	}
	if lost.IsZero() {
		return
	}
	for _, at := range c.connects {
		if at.After(lost) {
			return lost, at
		}
	}
	return lost, time.Time{}
}

// waitEveryoneConnected waits until every client that lost its connection
// got it back within bound of losing it.
func (r *failoverRun) waitEveryoneConnected(bound time.Duration) {
	r.t.Helper()
	for _, c := range append(slices.Clone(r.pubs), r.subs...) {
		for {
			c.mu.Lock()
			down := len(c.losses) > 0 && c.connects[len(c.connects)-1].Before(c.losses[len(c.losses)-1])
			var lostAt time.Time
			if down {
				lostAt = c.losses[len(c.losses)-1]
			}
			c.mu.Unlock()
			if !down {
				break
			}
			if time.Since(lostAt) > bound {
				r.t.Fatalf("%s lost its connection at %s and is not back %v later", c.id, clock(lostAt), bound)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// report waits for every publish to be acknowledged and every subscriber
// to get every acknowledged message (up to a bound), logs the counts and
// the reconnect times, and fails the test for a lost message.
func (r *failoverRun) report(faultAt time.Time) {
	r.t.Helper()
	r.mu.Lock()
	published := slices.Clone(r.published)
	newClients := slices.Clone(r.newClients)
	r.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	acked := make(map[string]bool, len(published))
	unacked, notSent := 0, 0
	var failed []string
	for _, m := range published {
		switch {
		case !m.token.WaitTimeout(time.Until(deadline)):
			unacked++
		case errors.Is(m.token.Error(), paho.ErrNotConnected):
			notSent++ // paho refused it: between a lost connection and the reconnection
		case m.token.Error() != nil:
			// The write failed as the connection broke: paho says so, and
			// sends it again from its store once reconnected, unreported.
			failed = append(failed, m.key+": "+m.token.Error().Error())
		default:
			acked[m.key] = true
		}
	}
	// Wait for the deliveries to settle: every acknowledged message
	// received, or nothing new for longer than NATS's ack_wait.
	for _, s := range r.subs {
		last, lastCount := time.Now(), -1
		for {
			s.mu.Lock()
			missing := 0
			for k := range acked {
				if s.received[k] == 0 {
					missing++
				}
			}
			count := len(s.received)
			s.mu.Unlock()
			if missing == 0 || time.Since(last) > natsAckWait+3*time.Second || time.Now().After(deadline) {
				break
			}
			if count != lastCount {
				last, lastCount = time.Now(), count
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	var lines, lostKeys []string
	totalLost := 0
	for _, s := range r.subs {
		s.mu.Lock()
		delivered, dups, lost := 0, 0, 0
		for _, n := range s.received {
			delivered += n
			dups += n - 1
		}
		for k := range acked {
			if s.received[k] == 0 {
				lost++
				if len(lostKeys) < 10 {
					lostKeys = append(lostKeys, s.id+" "+k)
				}
			}
		}
		reconnects := len(s.connects) - 1
		s.mu.Unlock()
		totalLost += lost
		lines = append(lines, fmt.Sprintf("%s: delivered %d (%d duplicates), lost %d, reconnects %d",
			s.id, delivered, dups, lost, reconnects))
	}
	var times []string
	for _, c := range append(slices.Clone(r.pubs), r.subs...) {
		c.mu.Lock()
		lost, back := c.lossAfter(faultAt)
		c.mu.Unlock()
		if !lost.IsZero() {
			times = append(times, fmt.Sprintf("%s lost %v after the fault, back %v later", c.id,
				lost.Sub(faultAt).Round(time.Millisecond), back.Sub(lost).Round(time.Millisecond)))
		}
	}
	var newTimes []string
	for _, c := range newClients {
		nc := c.took.Round(time.Millisecond).String()
		if len(c.failed) > 0 {
			nc += fmt.Sprintf(" (attempt %d; before: %s)", len(c.failed)+1, strings.Join(c.failed, ", "))
		}
		newTimes = append(newTimes, nc)
	}
	r.t.Logf("published %d, acknowledged %d (paho refused %d while disconnected, reported %d as failed %v); %s; reconnects: %s; new clients got in after %s",
		len(published)-notSent, len(acked), notSent, len(failed), failed, strings.Join(lines, "; "), strings.Join(times, "; "), strings.Join(newTimes, "; "))
	if unacked > 0 {
		r.t.Errorf("%d of %d publishes not acknowledged within 30s of the end", unacked, len(published)-notSent)
	}
	if totalLost > 0 {
		r.t.Errorf("%d acknowledged messages never reached a subscriber (publisher:sequence, up to 10: %v)", totalLost, lostKeys)
	}
}

// clock formats t as a time of day, or "never".
func clock(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Format("15:04:05.000")
}

// mqttClients returns the ids of the MQTT clients the node serves, sorted.
func (n *natsNode) mqttClients(t *testing.T) []string {
	t.Helper()
	ids, err := n.connz()
	if err != nil {
		t.Fatalf("NATS node %s: %v", n.name, err)
	}
	return ids
}

func (n *natsNode) connz() ([]string, error) {
	url := strings.TrimSuffix(n.health, "/healthz") + "/connz?limit=1024"
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var connz struct {
		Connections []struct {
			MQTTClient string `json:"mqtt_client"`
		} `json:"connections"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&connz); err != nil {
		return nil, fmt.Errorf("connz: %w", err)
	}
	var ids []string
	for _, c := range connz.Connections {
		if strings.HasPrefix(c.MQTTClient, "mqttws-pub") || strings.HasPrefix(c.MQTTClient, "mqttws-sub") {
			ids = append(ids, c.MQTTClient)
		}
	}
	slices.Sort(ids)
	return ids, nil
}
