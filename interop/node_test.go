package interop

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// nodeCase is a case of js/clients.mjs: MQTT.js in Node over WebSocket.
type nodeCase struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"` // transfer, retained, will or digest
	Version   int    `json:"version"`
	QoS       int    `json:"qos"`
	Size      int    `json:"size"`
	Seed      uint32 `json:"seed"`
	TimeoutMs int    `json:"timeoutMs"`
}

// nodePlan is what js/clients.mjs reads.
type nodePlan struct {
	URL         string     `json:"url"`
	Concurrency int        `json:"concurrency"`
	Cases       []nodeCase `json:"cases"`
}

// nodeResult is what js/clients.mjs reports for a case.
type nodeResult struct {
	Name         string   `json:"name"`
	Error        string   `json:"error"`
	Ms           int      `json:"ms"`
	Subprotocols []string `json:"subprotocols"`
	Granted      int      `json:"granted"`
	Message      *message `json:"message"`
	AfterClear   *message `json:"afterClear"`
	SHA256       string   `json:"sha256"`
}

// mqttVersions are the MQTT protocol levels MQTT.js speaks: 3 (MQTT 3.1,
// "MQIsdp"), 4 (3.1.1) and 5.
var mqttVersions = []int{3, 4, 5}

var qosLevels = []int{0, 1, 2}

// nodeSizes are the payload sizes of the Node transfers: empty, one byte,
// both sides of the WebSocket 7-bit and 16-bit frame lengths (MQTT headers
// add a few bytes: 125 and 126 straddle the first, 65535 and 65536 the
// second), and 1 MiB.
var nodeSizes = []int{0, 1, 125, 126, 65535, 65536, 1 << 20}

// willSizes are the sizes of the last wills: empty and not.
var willSizes = []int{0, 1000}

// retainedSize is the size of the retained messages.
const retainedSize = 1000

// Bounds of a Node case and of a whole run. mosquitto's own WebSocket
// listener sends about 40 KiB/s to a subscriber (4 KiB per turn of its event
// loop, mosquitto issue #1390): 1 MiB takes it about 25 s.
const (
	nodeCaseTimeout = 90 * time.Second
	nodeRunTimeout  = 4 * time.Minute
)

// nodeCases returns the MQTT.js cases: every protocol version, QoS and
// payload size; retained messages and last wills at every version and QoS.
func nodeCases() []nodeCase {
	var cases []nodeCase
	add := func(c nodeCase) {
		c.Seed = seedOf(c.Name)
		c.TimeoutMs = int(nodeCaseTimeout / time.Millisecond)
		cases = append(cases, c)
	}
	for _, v := range mqttVersions {
		for _, q := range qosLevels {
			for _, n := range nodeSizes {
				add(nodeCase{
					Name:    fmt.Sprintf("transfer/v%d/qos%d/%s", v, q, sizeName(n)),
					Kind:    "transfer",
					Version: v,
					QoS:     q,
					Size:    n,
				})
			}
			add(nodeCase{
				Name:    fmt.Sprintf("retained/v%d/qos%d", v, q),
				Kind:    "retained",
				Version: v,
				QoS:     q,
				Size:    retainedSize,
			})
			for _, n := range willSizes {
				add(nodeCase{
					Name:    fmt.Sprintf("will/v%d/qos%d/%s", v, q, sizeName(n)),
					Kind:    "will",
					Version: v,
					QoS:     q,
					Size:    n,
				})
			}
		}
	}
	// The largest first: they take longest on mosquitto's own listener,
	// and run side by side with the rest.
	slices.SortStableFunc(cases, func(a, b nodeCase) int { return cmp.Compare(b.Size, a.Size) })
	return cases
}

// difference is a way a broker legitimately differs from the others, which
// the tests expect rather than skip.
type difference struct {
	why     string
	broker  broker
	applies func(c nodeCase) bool
	// wantError is in the error the client then reports.
	wantError string
}

var differences = []difference{
	{
		why:    "mochi refuses a CONNECT whose will has an empty payload (mochi reads MQTT-3.1.2-9 as requiring one; MQTT 3.1.1 and 5.0 allow zero bytes, and mosquitto accepts it)",
		broker: mochiBroker,
		applies: func(c nodeCase) bool {
			return c.Kind == "will" && c.Size == 0
		},
		wantError: "Protocol Error",
	},
}

// expectedDifference returns the difference that applies to c on tg, if any.
func expectedDifference(tg target, c nodeCase) *difference {
	for i, d := range differences {
		if d.broker == tg.broker && d.applies(c) {
			return &differences[i]
		}
	}
	return nil
}

// TestMQTTjsInNodeGetsEveryMessageByteExact runs MQTT.js (npm mqtt) in Node
// against both examples and mosquitto's own listener: every protocol
// version, QoS and payload size arrives byte for byte, retained messages
// reach late subscribers with the retain flag and are cleared by an empty
// one, and a client whose socket is cut has its last will published.
func TestMQTTjsInNodeGetsEveryMessageByteExact(t *testing.T) {
	t.Parallel()
	needNode(t)
	targets := startTargets(t)
	cases := nodeCases()

	// Each target's run goes on while the others do; mosquitto's own
	// listener is the slowest.
	results := make([]map[string]nodeResult, len(targets))
	var wg sync.WaitGroup
	for i, tg := range targets {
		wg.Go(func() {
			var out struct {
				Results []nodeResult `json:"results"`
			}
			if err := runScript(t, nodeRunTimeout, "clients.mjs", nodePlan{URL: tg.url, Concurrency: 10, Cases: cases}, &out); err != nil {
				t.Errorf("%s: %v", tg.name, err)
				return
			}
			results[i] = make(map[string]nodeResult, len(out.Results))
			for _, r := range out.Results {
				results[i][r.Name] = r
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	for i, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			for _, c := range cases {
				t.Run(c.Name, func(t *testing.T) {
					r, ok := results[i][c.Name]
					if !ok {
						t.Fatal("js/clients.mjs reported nothing for this case")
					}
					checkNodeCase(t, tg, c, r)
				})
			}
		})
	}
}

// checkNodeCase judges what js/clients.mjs reported for c on tg.
func checkNodeCase(t *testing.T, tg target, c nodeCase, r nodeResult) {
	t.Helper()
	if d := expectedDifference(tg, c); d != nil {
		if !strings.Contains(r.Error, d.wantError) {
			t.Fatalf("expected difference of %s: %s; want an error with %q, got error %q and result %+v", tg.broker, d.why, d.wantError, r.Error, r)
		}
		t.Logf("expected difference of %s: %s", tg.broker, d.why)
		return
	}
	if r.Error != "" {
		t.Fatalf("MQTT.js: %s", r.Error)
	}
	topic := "interop/" + c.Name
	switch c.Kind {
	case "transfer":
		want := subprotocolFor(c.Version)
		if len(r.Subprotocols) != 2 || r.Subprotocols[0] != want || r.Subprotocols[1] != want {
			t.Errorf("negotiated subprotocols %q, want %q for both clients", r.Subprotocols, want)
		}
		if r.Granted != c.QoS {
			t.Errorf("SUBACK granted QoS %d, want %d", r.Granted, c.QoS)
		}
		wantMessage{topic: topic, qos: c.QoS, size: c.Size, seed: c.Seed}.check(t, "subscriber", r.Message)
	case "retained":
		wantMessage{topic: topic, qos: c.QoS, retain: true, size: c.Size, seed: c.Seed}.check(t, "subscriber after the retained publish", r.Message)
		if r.AfterClear == nil || r.AfterClear.Text != "marker" || r.AfterClear.Retain {
			t.Errorf("subscriber after the retained message was cleared: first message %+v, want the live \"marker\" (retain flag false)", r.AfterClear)
		}
	case "will":
		wantMessage{topic: topic, qos: c.QoS, size: c.Size, seed: c.Seed}.check(t, "will watcher", r.Message)
	default:
		t.Fatalf("unknown kind %q", c.Kind)
	}
}
