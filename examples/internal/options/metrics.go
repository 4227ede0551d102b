package options

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mqttws/mqttws"
)

// MetricsHandler serves h's Stats, with the Go runtime's and the process's
// metrics, in Prometheus text format.
func MetricsHandler(h *mqttws.Handler) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		statsCollector{h},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

var (
	activeDesc   = prometheus.NewDesc("mqttws_connections_active", "WebSocket connections being served.", nil, nil)
	acceptedDesc = prometheus.NewDesc("mqttws_connections_accepted_total", "WebSocket connections upgraded.", nil, nil)
	refusedDesc  = prometheus.NewDesc("mqttws_requests_refused_total", "Requests refused before the upgrade, by reason.", []string{"reason"}, nil)
	bytesDesc    = prometheus.NewDesc("mqttws_bytes_total", "MQTT bytes (frame payloads), by direction.", []string{"direction"}, nil)
	framesDesc   = prometheus.NewDesc("mqttws_frames_total", "WebSocket frames, by direction.", []string{"direction"}, nil)
	closesDesc   = prometheus.NewDesc("mqttws_close_frames_total", "Close frames, by direction and close code.", []string{"direction", "code"}, nil)

	// permessage-deflate (-compress); the bytes on the wire to clients in
	// all are mqttws_bytes_total{direction="out"} -
	// mqttws_compressed_bytes_total{direction="out"} +
	// mqttws_compressed_wire_bytes_total{direction="out"}.
	compressedConnsDesc = prometheus.NewDesc("mqttws_connections_compressed_total", "WebSocket connections upgraded with permessage-deflate.", nil, nil)
	compressedBytesDesc = prometheus.NewDesc("mqttws_compressed_bytes_total", "MQTT bytes that traveled in compressed messages, before compression, by direction.", []string{"direction"}, nil)
	compressedWireDesc  = prometheus.NewDesc("mqttws_compressed_wire_bytes_total", "Frame payload bytes of compressed messages on the wire, after compression, by direction.", []string{"direction"}, nil)
	compressedMsgsDesc  = prometheus.NewDesc("mqttws_compressed_messages_total", "Messages that traveled compressed, by direction.", []string{"direction"}, nil)
)

// statsCollector turns a Handler's Stats into metrics at each scrape.
type statsCollector struct{ h *mqttws.Handler }

func (c statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		activeDesc, acceptedDesc, refusedDesc, bytesDesc, framesDesc, closesDesc,
		compressedConnsDesc, compressedBytesDesc, compressedWireDesc, compressedMsgsDesc,
	} {
		ch <- d
	}
}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.h.Stats()
	ch <- prometheus.MustNewConstMetric(activeDesc, prometheus.GaugeValue, float64(st.Active))
	ch <- prometheus.MustNewConstMetric(acceptedDesc, prometheus.CounterValue, float64(st.Accepted))
	for reason, n := range st.Refused {
		ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue, float64(n), reason)
	}
	ch <- prometheus.MustNewConstMetric(bytesDesc, prometheus.CounterValue, float64(st.BytesIn), "in")
	ch <- prometheus.MustNewConstMetric(bytesDesc, prometheus.CounterValue, float64(st.BytesOut), "out")
	ch <- prometheus.MustNewConstMetric(framesDesc, prometheus.CounterValue, float64(st.FramesIn), "in")
	ch <- prometheus.MustNewConstMetric(framesDesc, prometheus.CounterValue, float64(st.FramesOut), "out")
	for code, n := range st.CloseSent {
		ch <- prometheus.MustNewConstMetric(closesDesc, prometheus.CounterValue, float64(n), "sent", strconv.Itoa(int(code)))
	}
	for code, n := range st.CloseReceived {
		ch <- prometheus.MustNewConstMetric(closesDesc, prometheus.CounterValue, float64(n), "received", strconv.Itoa(int(code)))
	}
	ch <- prometheus.MustNewConstMetric(compressedConnsDesc, prometheus.CounterValue, float64(st.Compressed))
	for _, m := range []struct {
		desc    *prometheus.Desc
		in, out uint64
	}{
		{compressedBytesDesc, st.CompressedBytesIn, st.CompressedBytesOut},
		{compressedWireDesc, st.CompressedWireBytesIn, st.CompressedWireBytesOut},
		{compressedMsgsDesc, st.CompressedMessagesIn, st.CompressedMessagesOut},
	} {
		ch <- prometheus.MustNewConstMetric(m.desc, prometheus.CounterValue, float64(m.in), "in")
		ch <- prometheus.MustNewConstMetric(m.desc, prometheus.CounterValue, float64(m.out), "out")
	}
}
