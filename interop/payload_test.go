package interop

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"testing"
	"time"
)

// payload returns size pseudo-random bytes for seed (xorshift32): the same
// bytes as payload() in js/payload.mjs, so that a client reports what it
// received as a length and a SHA-256, and the test knows what it must be.
func payload(size int, seed uint32) []byte {
	x := seed ^ 0x9e3779b9
	if x == 0 {
		x = 1
	}
	b := make([]byte, size)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// seedOf returns the payload seed of a case, from its name.
func seedOf(name string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	return h.Sum32()
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// sizeName names a payload size in subtest names: 0B, 126B, 64KiB, 1MiB.
func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// message is a message as a client reports it.
type message struct {
	Topic  string `json:"topic"`
	QoS    int    `json:"qos"`
	Retain bool   `json:"retain"`
	Len    int    `json:"len"`
	SHA256 string `json:"sha256"`
	// Text is the payload as Latin-1 when it has 16 bytes or less.
	Text string `json:"text"`
}

// wantMessage is what a client must receive.
type wantMessage struct {
	topic  string
	qos    int
	retain bool
	size   int
	seed   uint32
}

// check fails the test unless got is w, byte for byte.
func (w wantMessage) check(t testing.TB, what string, got *message) {
	t.Helper()
	if got == nil {
		t.Errorf("%s: no message, want %d bytes on %q", what, w.size, w.topic)
		return
	}
	if got.Topic != w.topic {
		t.Errorf("%s: topic %q, want %q", what, got.Topic, w.topic)
	}
	if got.QoS != w.qos {
		t.Errorf("%s: QoS %d, want %d", what, got.QoS, w.qos)
	}
	if got.Retain != w.retain {
		t.Errorf("%s: retain flag %v, want %v", what, got.Retain, w.retain)
	}
	if got.Len != w.size {
		t.Errorf("%s: payload of %d bytes, want %d", what, got.Len, w.size)
	} else if want := sha256Hex(payload(w.size, w.seed)); got.SHA256 != want {
		t.Errorf("%s: payload of %d bytes with SHA-256 %s, want %s: not the bytes sent", what, got.Len, got.SHA256, want)
	}
}

// subprotocolFor returns the WebSocket subprotocol of an MQTT protocol
// version: "mqttv3.1" for MQTT 3.1 (protocol level 3), "mqtt" for 3.1.1 and
// 5.0.
func subprotocolFor(version int) string {
	if version == 3 {
		return "mqttv3.1"
	}
	return "mqtt"
}

// TestPayloadIsTheSameInGoAndJavaScript guards the other tests: they
// compare what JavaScript clients received with what Go computes.
func TestPayloadIsTheSameInGoAndJavaScript(t *testing.T) {
	t.Parallel()
	needNode(t)
	sizes := []int{0, 1, 125, 4096, 200 << 10}
	plan := nodePlan{Concurrency: 1}
	for _, n := range sizes {
		plan.Cases = append(plan.Cases, nodeCase{
			Name:      sizeName(n),
			Kind:      "digest",
			Size:      n,
			Seed:      seedOf(sizeName(n)),
			TimeoutMs: 10000,
		})
	}
	var out struct {
		Results []nodeResult `json:"results"`
	}
	if err := runScript(t, time.Minute, "clients.mjs", plan, &out); err != nil {
		t.Fatal(err)
	}
	got := make(map[string]string)
	for _, r := range out.Results {
		got[r.Name] = r.SHA256
	}
	for _, c := range plan.Cases {
		if want := sha256Hex(payload(c.Size, c.Seed)); got[c.Name] != want {
			t.Errorf("%d bytes: JavaScript's payload has SHA-256 %q, Go's %s", c.Size, got[c.Name], want)
		}
	}
}
