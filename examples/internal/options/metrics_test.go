package options_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"

	"github.com/mqttws/mqttws"
	"github.com/mqttws/mqttws/examples/internal/options"
)

func TestCompressedTrafficIsInTheMetrics(t *testing.T) {
	text := bytes.Repeat([]byte("MQTT over WebSocket, compressed. "), 300) // 9,900 bytes
	h := &mqttws.Handler{
		// Sends back the text in one Write, compressed as one message.
		Backend: mqttws.BackendFunc(func(_ context.Context, c net.Conn) error {
			got := make([]byte, len(text))
			if _, err := io.ReadFull(c, got); err != nil {
				return err
			}
			if _, err := c.Write(got); err != nil {
				return err
			}
			_, err := io.Copy(io.Discard, c)
			return err
		}),
		Logger:      slog.New(slog.DiscardHandler),
		Compression: &mqttws.CompressionOptions{},
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	metrics := httptest.NewServer(options.MetricsHandler(h))
	t.Cleanup(metrics.Close)

	d := ws.Dialer{Protocols: []string{"mqtt"}}
	d.Extensions = append(d.Extensions, wsflate.DefaultParameters.Option())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, br, _, err := d.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var r io.Reader = conn
	if br != nil {
		r = br
	}
	f, err := wsflate.CompressFrame(ws.NewBinaryFrame(text))
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if err := ws.WriteFrame(conn, ws.MaskFrame(f)); err != nil {
		t.Fatal(err)
	}
	var echoed []byte
	for len(echoed) < len(text) {
		h, err := ws.ReadHeader(r)
		if err == nil && h.Length > int64(len(text)) {
			err = fmt.Errorf("a frame of %d bytes", h.Length)
		}
		f := ws.Frame{Header: h, Payload: make([]byte, max(h.Length, 0))}
		if err == nil {
			_, err = io.ReadFull(r, f.Payload)
		}
		if err != nil {
			t.Fatalf("after %d bytes of the echo: %v", len(echoed), err)
		}
		if compressed, _ := wsflate.IsCompressed(f.Header); compressed {
			if f, err = wsflate.DecompressFrame(f); err != nil {
				t.Fatal(err)
			}
		}
		echoed = append(echoed, f.Payload...)
	}

	// The counters of a Write are added once it is sent: the echo may
	// arrive before.
	var m string
	scrape := func() {
		resp, err := http.Get(metrics.URL)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		m = string(b)
	}
	value := func(name string) int {
		t.Helper()
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` ([0-9.e+]+)$`)
		v := re.FindStringSubmatch(m)
		if v == nil {
			t.Fatalf("no %s in the metrics:\n%s", name, m)
		}
		n, err := strconv.ParseFloat(v[1], 64)
		if err != nil {
			t.Fatal(err)
		}
		return int(n)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		scrape()
		if value(`mqttws_compressed_bytes_total{direction="out"}`) > 0 || time.Now().After(deadline) {
			break
		}
	}
	if n := value("mqttws_connections_compressed_total"); n != 1 {
		t.Errorf("mqttws_connections_compressed_total %d, want 1", n)
	}
	for _, dir := range []string{"in", "out"} {
		bytesIn := value(`mqttws_compressed_bytes_total{direction="` + dir + `"}`)
		wire := value(`mqttws_compressed_wire_bytes_total{direction="` + dir + `"}`)
		messages := value(`mqttws_compressed_messages_total{direction="` + dir + `"}`)
		t.Logf("%s: %d bytes in %d compressed messages took %d bytes on the wire", dir, bytesIn, messages, wire)
		if bytesIn != len(text) || messages < 1 || wire <= 0 || wire >= bytesIn/10 {
			t.Errorf("%s: %d bytes in %d messages, %d on the wire; want %d bytes in 1 or more messages, and a tenth or less on the wire", dir, bytesIn, messages, wire, len(text))
		}
	}
}
