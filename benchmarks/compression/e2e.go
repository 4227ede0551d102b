package compression

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqttws/mqttws/benchmarks/internal/load"
	"github.com/mqttws/mqttws/internal/pahotest"
)

// Load describes one end-to-end run: Publishers clients publish Messages
// messages each at QoS 1, at most Window in flight per client, to one
// subscriber, all through one broker. Message seq of publisher pub carries
// Series[i % len(Series)], where i = seq*Publishers + pub numbers the
// messages in the order publishers keeping pace send them, so that what
// reaches the subscriber goes through the series in turn (a compressor
// with a history must not meet the same message again and again, which
// no sensor sends). Each message's first IDSize bytes are replaced by its
// publisher and sequence number in hexadecimal (text, so that JSON stays
// text); the subscriber checks the rest byte for byte against the
// message of the series it carries.
//
// Publishers also pause while Backlog messages sent are not yet delivered:
// a QoS 1 PUBACK comes from the broker, not the subscriber, so without it
// publishers outrun a subscriber that reads slower than they send, and
// mochi drops what is past its per-client limits (8192 messages queued or
// in flight: "client store quota reached"). msgs/s is then what the whole
// chain sustains.
type Load struct {
	URL        string
	Series     [][]byte // each at least IDSize bytes
	Publishers int
	Messages   int // per publisher
	Window     int
	Backlog    int           // sent and not yet delivered, at most; 0 means DefaultBacklog
	Timeout    time.Duration // bound of the whole run
}

// DefaultBacklog is Load.Backlog's default, well under mochi's 8192.
const DefaultBacklog = 1024

// IDSize is the part of each payload that identifies the message.
const IDSize = 16

// stallTimeout ends the wait for deliveries once none has come for this
// long, as in internal/load.
const stallTimeout = 2 * time.Second

// LoadResult is what the subscriber saw.
type LoadResult struct {
	Sent       int
	Received   int // distinct messages delivered intact
	Duplicates int
	Corrupt    int           // deliveries whose bytes differ from what was sent
	Elapsed    time.Duration // first publish to last delivery
	Extensions []string      // the Sec-WebSocket-Extensions each client negotiated
	// ClientCPU is the CPU time of the clients' process from the first
	// publish to the last delivery (for paho, the test process, which runs
	// nothing else meanwhile).
	ClientCPU time.Duration
}

// Lost returns the messages sent and not delivered intact.
func (r LoadResult) Lost() int { return r.Sent - r.Received }

// PerSecond returns the messages delivered per second.
func (r LoadResult) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Received) / r.Elapsed.Seconds()
}

// message returns the index in l.Series of message seq of publisher pub.
func (l Load) message(pub, seq int) int {
	return (seq*l.Publishers + pub) % len(l.Series)
}

// check reports why l cannot run, if it cannot.
func (l Load) check() error {
	if len(l.Series) == 0 {
		return errors.New("compression: a load with no messages in its series")
	}
	for i, m := range l.Series {
		if len(m) < IDSize {
			return fmt.Errorf("compression: message %d of the series has %d bytes, under the %d-byte identity", i, len(m), IDSize)
		}
	}
	return nil
}

// stamp writes message (pub, seq)'s identity into p.
func stamp(p []byte, pub, seq int) {
	_ = fmt.Appendf(p[:0], "%08x%08x", pub, seq) // in place: p is longer
}

// identify reads the identity stamp wrote.
func identify(p []byte) (pub, seq int, ok bool) {
	if len(p) < IDSize {
		return 0, 0, false
	}
	a, err1 := strconv.ParseUint(string(p[:8]), 16, 32)
	b, err2 := strconv.ParseUint(string(p[8:IDSize]), 16, 32)
	return int(a), int(b), err1 == nil && err2 == nil
}

// tally is the subscriber's count of deliveries.
type tally struct {
	load Load // what is published

	mu       sync.Mutex
	caughtUp *sync.Cond // on mu: a delivery came, or the run ended
	sent     int        // publishes handed to the clients
	seen     []bool
	received int
	dups     int
	corrupt  int
	last     time.Time
	progress chan struct{}
}

func newTally(l Load) *tally {
	t := &tally{
		load:     l,
		seen:     make([]bool, l.Publishers*l.Messages),
		progress: make(chan struct{}, 1),
	}
	t.caughtUp = sync.NewCond(&t.mu)
	return t
}

// admit counts one more publish, first waiting while backlog messages sent
// are not delivered, or until ctx ends.
func (t *tally) admit(ctx context.Context, backlog int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for t.sent-(t.received+t.dups+t.corrupt) >= backlog {
		if err := ctx.Err(); err != nil {
			return err
		}
		t.caughtUp.Wait()
	}
	t.sent++
	return nil
}

// wake wakes the publishers waiting in admit.
func (t *tally) wake() {
	t.mu.Lock()
	t.caughtUp.Broadcast()
	t.mu.Unlock()
}

func (t *tally) deliver(p []byte) {
	now := time.Now()
	pub, seq, ok := identify(p)
	t.mu.Lock()
	switch {
	case !ok || pub >= t.load.Publishers || seq >= t.load.Messages || !bytes.Equal(p[IDSize:], t.load.Series[t.load.message(pub, seq)][IDSize:]):
		t.corrupt++
	case t.seen[pub*t.load.Messages+seq]:
		t.dups++
	default:
		t.seen[pub*t.load.Messages+seq] = true
		t.received++
		t.last = now
	}
	t.caughtUp.Broadcast()
	t.mu.Unlock()
	select {
	case t.progress <- struct{}{}:
	default:
	}
}

// waitFor waits until want messages arrived, deliveries stall, or ctx ends.
func (t *tally) waitFor(ctx context.Context, want int) {
	stall := time.NewTimer(stallTimeout)
	defer stall.Stop()
	for {
		t.mu.Lock()
		got := t.received
		t.mu.Unlock()
		if got >= want {
			return
		}
		select {
		case <-t.progress:
			stall.Reset(stallTimeout)
		case <-stall.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// RunPaho runs l with eclipse/paho.mqtt.golang clients over gorilla/websocket
// that offer permessage-deflate (paho's own WebSocket dialer cannot: it
// sets EnableCompression false). Before the clients disconnect it calls
// atEnd, where the caller reads the broker's counters.
func RunPaho(ctx context.Context, l Load, atEnd func()) (LoadResult, error) {
	if err := l.check(); err != nil {
		return LoadResult{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, l.Timeout)
	defer cancel()
	const topic = "bench/compression"
	res := LoadResult{}
	tl := newTally(l)
	defer context.AfterFunc(ctx, tl.wake)()
	var exts extensions
	sub, err := connectPaho(l.URL, "sub", &exts)
	if err != nil {
		return res, err
	}
	defer sub.Disconnect(0)
	if err := waitToken(ctx, sub.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) { tl.deliver(m.Payload()) })); err != nil {
		return res, fmt.Errorf("compression: subscribe: %w", err)
	}
	pubs := make([]paho.Client, l.Publishers)
	for i := range pubs {
		if pubs[i], err = connectPaho(l.URL, fmt.Sprintf("pub%d", i), &exts); err != nil {
			return res, err
		}
		defer pubs[i].Disconnect(0)
	}
	start, cpu0 := time.Now(), cpuTime()
	sent := make([]int, len(pubs))
	errs := make([]error, len(pubs))
	var wg sync.WaitGroup
	for i, c := range pubs {
		wg.Go(func() { sent[i], errs[i] = publishPaho(ctx, c, topic, i, l, tl) })
	}
	wg.Wait()
	for _, n := range sent {
		res.Sent += n
	}
	if err := errors.Join(errs...); err != nil && ctx.Err() == nil {
		return res, err
	}
	tl.waitFor(ctx, res.Sent)
	res.ClientCPU = cpuTime() - cpu0
	if atEnd != nil {
		atEnd()
	}
	tl.mu.Lock()
	res.Received, res.Duplicates, res.Corrupt = tl.received, tl.dups, tl.corrupt
	res.Elapsed = max(tl.last.Sub(start), 0)
	tl.mu.Unlock()
	res.Extensions = exts.list()
	return res, nil
}

// publishPaho sends l.Messages messages from publisher pub, at most
// l.Window in flight and the backlog under l.Backlog, and returns how many
// it handed to the client.
func publishPaho(ctx context.Context, c paho.Client, topic string, pub int, l Load, tl *tally) (int, error) {
	window := max(l.Window, 1)
	backlog := l.Backlog
	if backlog <= 0 {
		backlog = DefaultBacklog
	}
	tokens := make([]paho.Token, window)
	bufs := make([][]byte, window)
	sent := 0
	for seq := range l.Messages {
		slot := seq % window
		if t := tokens[slot]; t != nil {
			// The slot's payload is free again once its publish is done.
			if err := waitToken(ctx, t); err != nil {
				return sent, err
			}
		}
		if err := tl.admit(ctx, backlog); err != nil {
			return sent, err
		}
		bufs[slot] = append(bufs[slot][:0], l.Series[l.message(pub, seq)]...)
		stamp(bufs[slot], pub, seq)
		tokens[slot] = c.Publish(topic, 1, false, bufs[slot])
		sent++
	}
	for _, t := range tokens {
		if t != nil {
			if err := waitToken(ctx, t); err != nil {
				return sent, err
			}
		}
	}
	return sent, nil
}

func waitToken(ctx context.Context, t paho.Token) error {
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// extensions collects what each client's handshake negotiated.
type extensions struct {
	mu sync.Mutex
	l  []string
}

func (e *extensions) add(s string) {
	e.mu.Lock()
	e.l = append(e.l, s)
	e.mu.Unlock()
}

func (e *extensions) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.l...)
}

// connectPaho connects a paho client (MQTT 3.1.1, clean session, no
// reconnects) through pahotest.DialGorilla.
func connectPaho(brokerURL, id string, exts *extensions) (paho.Client, error) {
	o := load.ClientOptions(brokerURL, id).
		SetCustomOpenConnectionFn(func(uri *url.URL, o paho.ClientOptions) (net.Conn, error) {
			c, ext, err := pahotest.DialGorilla(uri.String(), o.ConnectTimeout)
			if err == nil {
				exts.add(ext)
			}
			return c, err
		})
	c := paho.NewClient(o)
	t := c.Connect()
	if !t.WaitTimeout(15 * time.Second) {
		c.Disconnect(0)
		return nil, fmt.Errorf("compression: connect %s to %s: no CONNACK within 15s", id, brokerURL)
	}
	if err := t.Error(); err != nil {
		return nil, fmt.Errorf("compression: connect %s to %s: %w", id, brokerURL, err)
	}
	return c, nil
}
