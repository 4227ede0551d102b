package interop

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/mqttws/mqttws/internal/testbroker"
)

// Several gateways (examples/proxy processes) behind one TCP load balancer
// (nginx's stream module, docs/nginx-stream.conf), all in front of one
// mosquitto: clients spread over the gateways through one URL, QoS 1
// messages cross gateways, and a gateway killed mid-run loses nothing.

// Bounds and sizes of the gateways test. A client of the killed gateway
// learns of it at once (the kernel closes the gateway's sockets, nginx the
// client's), paho dials again at once, and nginx passes the connection
// refused by the dead gateway on to a live one: it is back within tens of
// milliseconds. An attempt that nginx put through to the dying gateway's
// listener in the moment the kernel was closing it is reset after nginx
// sent the handshake on, too late to try another gateway: paho tries again
// after 1 s. Either way it is back within gatewayReconnectBound of the kill.
const (
	gatewayCount          = 3
	gatewayPublishers     = 6
	gatewaySubscribers    = 6
	gatewayNewClients     = 6
	gatewayReconnectBound = 5 * time.Second
	// gatewayTrafficAfter is how long traffic goes on once every client is
	// back.
	gatewayTrafficAfter = 2 * time.Second
)

// TestGatewaysShareClientsBehindATCPLoadBalancer runs three examples/proxy
// gateways in front of one mosquitto, and nginx, with the deployment
// guide's stream configuration, in front of them. Twelve paho clients
// (persistent sessions, QoS 1) connect one after the other through nginx's
// one URL: each gateway holds as many as the others, give or take one (its
// metrics count them), and every subscriber gets every publisher's
// messages, from the other gateways too. Then one gateway is killed with
// SIGKILL while messages flow: exactly its clients lose their connection
// and are back, through the same URL, on the two others within
// gatewayReconnectBound; nginx passes each connection the dead gateway
// refuses on to a live one, so new clients get in at the first attempt; and
// once publishing stops, every acknowledged message reached every
// subscriber. It logs published, delivered, lost and duplicated.
func TestGatewaysShareClientsBehindATCPLoadBalancer(t *testing.T) {
	needFile(t, nginxPath, "nginx")
	needFile(t, nginxStreamModule, "libnginx-mod-stream")
	start := time.Now()
	broker := testbroker.Start(t, testbroker.Options{})
	gws := make([]*gateway, gatewayCount)
	addrs := make([]string, gatewayCount)
	for i := range gws {
		gws[i] = startGateway(t, fmt.Sprintf("g%d", i+1), broker.Addr)
		addrs[i] = gws[i].addr
	}
	url, errorLog := startNginxStream(t, addrs)
	t.Logf("mosquitto, %d gateways %v and nginx up in %v; clients connect to %s", gatewayCount, addrs, time.Since(start).Round(time.Millisecond), url)

	// One client at a time, publishers and subscribers in turn: the
	// gateway whose count of connections goes up is the client's.
	run := newFailoverRun(t, url)
	on := map[*clusterClient]int{}
	counts := make([]int, gatewayCount)
	for i := range gatewayPublishers + gatewaySubscribers {
		var c *clusterClient
		if i%2 == 0 {
			c = run.connect(fmt.Sprintf("pub%d", i/2))
			run.pubs = append(run.pubs, c)
		} else {
			c = run.connect(fmt.Sprintf("sub%d", i/2))
			run.subs = append(run.subs, c)
		}
		on[c] = waitNewConnection(t, gws, counts)
	}
	holds := make([][]string, gatewayCount)
	for _, c := range slices.Concat(run.pubs, run.subs) {
		holds[on[c]] = append(holds[on[c]], c.id)
	}
	t.Logf("connections per gateway %v: %v", counts, holds)
	for i, n := range counts {
		if n < 1 {
			t.Fatalf("gateway %s holds no client of %d (each gateway's count: %v): nginx does not spread them", gws[i].name, len(on), counts)
		}
	}
	if slices.Max(counts)-slices.Min(counts) > 1 {
		t.Fatalf("connections per gateway %v: least_conn should spread clients connecting one after the other evenly", counts)
	}
	for _, s := range run.subs {
		if !slices.ContainsFunc(run.pubs, func(p *clusterClient) bool { return on[p] != on[s] }) {
			t.Fatalf("no publisher on another gateway than %s's (%s): no message would cross gateways", s.id, gws[on[s]].name)
		}
	}
	run.startPublishing()
	run.waitCrossNode()

	// The first gateway dies while messages flow.
	dead := 0
	var victims []*clusterClient
	for _, c := range slices.Concat(run.pubs, run.subs) {
		if on[c] == dead {
			victims = append(victims, c)
		}
	}
	faultAt := time.Now()
	gws[dead].kill(t)
	t.Logf("gateway %s killed at %s with %d clients", gws[dead].name, clock(faultAt), len(victims))
	newClients := run.connectNewClients(gatewayNewClients, 250*time.Millisecond)
	for _, c := range victims {
		c.waitReconnected(t, faultAt, gatewayReconnectBound)
	}
	run.waitEveryoneConnected(gatewayReconnectBound)
	backAt := time.Now()
	survivors := slices.Delete(slices.Clone(gws), dead, dead+1)
	after := waitConnections(t, survivors, len(on), gatewayReconnectBound)
	t.Logf("every client back %v after the kill; connections per surviving gateway: %v", backAt.Sub(faultAt).Round(time.Millisecond), after)

	time.Sleep(gatewayTrafficAfter)
	run.stopPublishing()
	<-newClients

	// Exactly the dead gateway's clients lost their connection, once.
	var slowest time.Duration
	for _, c := range slices.Concat(run.pubs, run.subs) {
		c.mu.Lock()
		lost, back := c.lossAfter(faultAt)
		losses := len(c.losses)
		c.mu.Unlock()
		victim := on[c] == dead
		switch {
		case victim && (lost.IsZero() || back.IsZero()):
			t.Errorf("%s, a client of the killed gateway, lost its connection at %s and was back at %s", c.id, clock(lost), clock(back))
		case !victim && losses > 0:
			t.Errorf("%s, a client of gateway %s, lost its connection %d times", c.id, gws[on[c]].name, losses)
		case victim:
			slowest = max(slowest, back.Sub(faultAt))
			if losses != 1 {
				t.Errorf("%s lost its connection %d times, want once", c.id, losses)
			}
		}
	}
	t.Logf("the %d clients of the killed gateway were back within %v of the kill (bound %v)", len(victims), slowest.Round(time.Millisecond), gatewayReconnectBound)
	run.report(faultAt)

	run.mu.Lock()
	got := slices.Clone(run.newClients)
	run.mu.Unlock()
	if len(got) != gatewayNewClients {
		t.Errorf("%d of %d new clients got in", len(got), gatewayNewClients)
	}
	for _, c := range got {
		if len(c.failed) > 0 {
			t.Errorf("a new client got in after %v at its attempt %d (failed: %v): nginx should pass a connection the dead gateway refuses on to a live one", c.took.Round(time.Millisecond), len(c.failed)+1, c.failed)
		}
	}
	passed, err := passedOn(errorLog, gws[dead].addr, survivors)
	if err != nil {
		t.Error(err)
	}
	t.Logf("nginx's connections refused by the dead gateway and passed on to a live one: %v; test time %v", passed, time.Since(start).Round(time.Millisecond))
}

// nginxConnectFailed and nginxConnected are the lines of nginx's error log (at
// level info) saying that its connection *ID failed to connect to an
// upstream, or connected to one.
var (
	nginxConnectFailed = regexp.MustCompile(`\*([0-9]+) connect\(\) failed .*upstream: "([^"]+)"`)
	nginxConnected     = regexp.MustCompile(`\*([0-9]+) proxy \S+ connected to (\S+)`)
)

// passedOn checks in nginx's error log that nginx tried the dead gateway
// (least_conn offers the gateway with the fewest connections first) and
// passed every connection it refused on to a live gateway, rather than
// closing the client's connection. It returns those connections, as
// "*ID → host:port".
func passedOn(errorLog, dead string, live []*gateway) ([]string, error) {
	log, err := os.ReadFile(errorLog)
	if err != nil {
		return nil, err
	}
	connectedTo := map[string]string{}
	for _, m := range nginxConnected.FindAllStringSubmatch(string(log), -1) {
		connectedTo[m[1]] = m[2]
	}
	var passed []string
	for _, m := range nginxConnectFailed.FindAllStringSubmatch(string(log), -1) {
		if m[2] != dead {
			return passed, fmt.Errorf("nginx failed to connect to %s, a live gateway: %s", m[2], m[0])
		}
		to := connectedTo[m[1]]
		if !slices.ContainsFunc(live, func(g *gateway) bool { return g.addr == to }) {
			return passed, fmt.Errorf("nginx's connection *%s, refused by the dead gateway, was not passed on to a live one (connected to %q); nginx's log:\n%s", m[1], to, tail(string(log)))
		}
		passed = append(passed, "*"+m[1]+" → "+to)
	}
	if len(passed) == 0 {
		return nil, fmt.Errorf("nginx never tried the dead gateway %s after the kill: least_conn offers the gateway with the fewest connections first; nginx's log:\n%s", dead, tail(string(log)))
	}
	return passed, nil
}

// waitNewConnection waits until the gateways hold one connection more than
// counts, updates counts, and returns the index of the gateway that got it.
func waitNewConnection(t *testing.T, gws []*gateway, counts []int) int {
	t.Helper()
	want := 0
	for _, n := range counts {
		want += n
	}
	want++
	deadline := time.Now().Add(5 * time.Second)
	for {
		now, err := activeConnections(gws)
		if err != nil {
			t.Fatal(err)
		}
		total, grew := 0, -1
		for i, n := range now {
			total += n
			if n == counts[i]+1 {
				grew = i
			}
		}
		if total == want && grew >= 0 {
			copy(counts, now)
			return grew
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateways hold %v connections, %d in all; want one more than %v", now, total, counts)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitConnections waits until gws hold want connections in all, within
// bound, and returns each one's count.
func waitConnections(t *testing.T, gws []*gateway, want int, bound time.Duration) []int {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		now, err := activeConnections(gws)
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, n := range now {
			total += n
		}
		if total == want {
			return now
		}
		if time.Now().After(deadline) {
			t.Fatalf("the surviving gateways hold %v connections, %d in all, %v after the clients came back; want %d", now, total, bound, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// activeConnections returns each gateway's count of WebSocket connections.
func activeConnections(gws []*gateway) ([]int, error) {
	counts := make([]int, len(gws))
	for i, g := range gws {
		n, err := g.active()
		if err != nil {
			return nil, err
		}
		counts[i] = n
	}
	return counts, nil
}

// TestDeployGuideShowsTheTestedStreamConfig: one nginx block of
// docs/deploy.md is the stream configuration the gateways test runs.
func TestDeployGuideShowsTheTestedStreamConfig(t *testing.T) {
	guide, err := os.ReadFile("../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(deployGuideStream)
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```nginx\n(.*?)```").FindAllSubmatch(guide, -1)
	shown := 0
	for _, b := range blocks {
		if string(b[1]) == string(conf) {
			shown++
		}
	}
	if shown != 1 {
		t.Fatalf("docs/deploy.md shows %s %d times in its %d nginx blocks, want once as it is", deployGuideStream, shown, len(blocks))
	}
}
