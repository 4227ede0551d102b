// Package load measures end-to-end MQTT throughput and latency: N
// eclipse/paho.mqtt.golang publishers send to one paho subscriber through a
// broker, and the subscriber counts what arrives and how long each message
// took (the send time travels inside the payload).
package load

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// Config describes one run.
type Config struct {
	URL        string        // tcp://127.0.0.1:port, or ws://127.0.0.1:port/mqtt
	Publishers int           // publishing clients, one connection each
	Messages   int           // messages each publisher sends
	Size       int           // payload bytes, at least HeaderSize
	QoS        byte          // 0 or 1, for publishes and the subscription
	Window     int           // publishes each publisher has in flight at most
	Timeout    time.Duration // bound for publishing and delivery
}

// HeaderSize is the part of each payload the harness uses: the send time,
// the publisher and the sequence number.
const HeaderSize = 16

// Result is what the subscriber saw.
type Result struct {
	Sent       int           // publishes handed to the publishers' connections
	Received   int           // distinct messages delivered to the subscriber
	Duplicates int           // deliveries of a message already received
	Elapsed    time.Duration // from the first publish to the last delivery
	P50, P99   time.Duration // delivery latency percentiles
	TimedOut   bool          // Timeout, rather than a stall, ended the wait for deliveries
}

// Lost returns the messages sent but not delivered (dropped by the broker,
// or still on their way when the run ended).
func (r Result) Lost() int { return r.Sent - r.Received }

// MsgsPerSec returns the delivered messages per second.
func (r Result) MsgsPerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Received) / r.Elapsed.Seconds()
}

// MBPerSec returns the delivered payload in megabytes (10^6) per second.
func (r Result) MBPerSec(size int) float64 { return r.MsgsPerSec() * float64(size) / 1e6 }

// runSeq tells runs apart in client ids and topics.
var (
	runMu  sync.Mutex
	runSeq int
)

// Run performs one measurement: it connects the subscriber and the
// publishers, lets every publisher send its messages with at most Window in
// flight, and waits until all are delivered, delivery stalls, or Timeout.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Size < HeaderSize {
		return Result{}, fmt.Errorf("load: payload of %d bytes is under the %d-byte header", cfg.Size, HeaderSize)
	}
	cfg.Window = max(cfg.Window, 1)
	runMu.Lock()
	runSeq++
	id := fmt.Sprintf("bench%d", runSeq)
	runMu.Unlock()
	topic := "bench/" + id

	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	base := time.Now()
	rec := newRecorder(base, cfg.Publishers, cfg.Messages)
	sub, err := connect(cfg.URL, id+"-sub")
	if err != nil {
		return Result{}, err
	}
	defer sub.Disconnect(0)
	if err := wait(ctx, sub.Subscribe(topic, cfg.QoS, rec.onMessage)); err != nil {
		return Result{}, fmt.Errorf("load: subscribe: %w", err)
	}

	pubs := make([]paho.Client, cfg.Publishers)
	for i := range pubs {
		if pubs[i], err = connect(cfg.URL, fmt.Sprintf("%s-pub%d", id, i)); err != nil {
			return Result{}, err
		}
		defer pubs[i].Disconnect(0)
	}

	start := time.Now()
	sent := make([]int, len(pubs))
	errs := make([]error, len(pubs))
	var wg sync.WaitGroup
	for i, c := range pubs {
		wg.Go(func() { sent[i], errs[i] = publish(ctx, c, topic, i, base, cfg) })
	}
	wg.Wait()
	res := Result{}
	for _, n := range sent {
		res.Sent += n
	}
	if err := errors.Join(errs...); err != nil && ctx.Err() == nil {
		return res, err
	}
	res.TimedOut = !rec.waitFor(ctx, res.Sent) && ctx.Err() != nil
	res.Received, res.Duplicates, res.P50, res.P99 = rec.summary()
	if last := rec.lastArrival(); last.After(start) {
		res.Elapsed = last.Sub(start)
	} else {
		res.Elapsed = time.Since(start)
	}
	return res, nil
}

// publish sends cfg.Messages messages from publisher pub, keeping at most
// cfg.Window in flight, and returns how many it handed to the client.
func publish(ctx context.Context, c paho.Client, topic string, pub int, base time.Time, cfg Config) (int, error) {
	tokens := make([]paho.Token, cfg.Window)
	bufs := make([][]byte, cfg.Window)
	for i := range bufs {
		bufs[i] = make([]byte, cfg.Size)
		for j := HeaderSize; j < cfg.Size; j++ {
			bufs[i][j] = byte(j)
		}
	}
	sent := 0
	for seq := range cfg.Messages {
		slot := seq % cfg.Window
		if t := tokens[slot]; t != nil {
			// The slot's payload is free again once its publish is done.
			if err := wait(ctx, t); err != nil {
				return sent, err
			}
		}
		p := bufs[slot]
		binary.BigEndian.PutUint32(p[8:], uint32(pub))
		binary.BigEndian.PutUint32(p[12:], uint32(seq))
		binary.BigEndian.PutUint64(p[0:], uint64(time.Since(base)))
		tokens[slot] = c.Publish(topic, cfg.QoS, false, p)
		sent++
	}
	for _, t := range tokens {
		if t != nil {
			if err := wait(ctx, t); err != nil {
				return sent, err
			}
		}
	}
	return sent, nil
}

// wait waits for t until ctx ends.
func wait(ctx context.Context, t paho.Token) error {
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}
