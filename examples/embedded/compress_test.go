package main

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mqttws/mqttws/examples/internal/exampletest"
)

// deflateOffer is what browsers offer.
const deflateOffer = "permessage-deflate; client_max_window_bits"

func TestCompressNegotiatesPermessageDeflate(t *testing.T) {
	tests := []struct {
		name  string
		flags []string
		want  string // Sec-WebSocket-Extensions of the answer
	}{
		{
			name: "off by default",
		},
		{
			name:  "-compress",
			flags: []string{"-compress"},
			want:  "permessage-deflate",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := start(t, append([]string{"-metrics-listen", "127.0.0.1:0"}, tc.flags...)...)
			status, header, body, err := exampletest.Handshake{From: "127.0.0.1", Addr: p.Addr, Path: "/mqtt", Extensions: deflateOffer}.Answer()
			if err != nil || status != http.StatusSwitchingProtocols {
				t.Fatalf("handshake offering %q: %d %q %v, want 101", deflateOffer, status, body, err)
			}
			got := header.Get("Sec-WebSocket-Extensions")
			if !strings.HasPrefix(got, tc.want) || (tc.want == "" && got != "") {
				t.Errorf("Sec-WebSocket-Extensions: %q, want %q", got, tc.want)
			}
			compressed := "0"
			if tc.want != "" {
				compressed = "1"
			}
			checkCompressionMetrics(t, exampletest.MetricsURL(t, p), compressed)
		})
	}
}

// acceptedMetric and compressedMetric match the counts of connections
// upgraded, and of those compressed.
var (
	acceptedMetric   = regexp.MustCompile(`(?m)^mqttws_connections_accepted_total ([0-9]+)$`)
	compressedMetric = regexp.MustCompile(`(?m)^mqttws_connections_compressed_total ([0-9]+)$`)
)

// checkCompressionMetrics fails the test unless the metrics at url, once
// they count the one connection upgraded, count want compressed
// connections and have the compressed traffic counters. (The 101 goes out
// before the handler counts the connection.)
func checkCompressionMetrics(t *testing.T, url, want string) {
	t.Helper()
	var metrics string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		metrics = string(b)
		if m := acceptedMetric.FindStringSubmatch(metrics); m != nil && m[1] == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the metrics do not count the connection within 5s:\n%s", metrics)
		}
	}
	if m := compressedMetric.FindStringSubmatch(metrics); m == nil || m[1] != want {
		t.Errorf("mqttws_connections_compressed_total: %q, want %s", m, want)
	}
	for _, name := range []string{
		`mqttws_compressed_bytes_total{direction="in"}`,
		`mqttws_compressed_bytes_total{direction="out"}`,
		`mqttws_compressed_wire_bytes_total{direction="in"}`,
		`mqttws_compressed_wire_bytes_total{direction="out"}`,
		`mqttws_compressed_messages_total{direction="in"}`,
		`mqttws_compressed_messages_total{direction="out"}`,
	} {
		if !strings.Contains(metrics, name) {
			t.Errorf("no %s in the metrics", name)
		}
	}
}
