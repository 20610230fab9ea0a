package shipper

import "github.com/prometheus/client_golang/prometheus"

// metrics are the shipper's Prometheus series (namespace skiff, subsystem
// logs).
type metrics struct {
	shipped, duplicates, dropped, deadLettered, retries, rawFallbacks, setupFailures prometheus.Counter
	files                                                                            prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "skiff", Subsystem: "logs", Name: name, Help: help})
	}
	m := &metrics{
		shipped:       c("shipped_lines_total", "Log lines the sink acknowledged as created (201)."),
		duplicates:    c("duplicate_lines_total", "Log lines the sink already had (409 on a deterministic document ID, after a re-ship)."),
		dropped:       c("dropped_lines_total", "Log lines lost because rotation removed a file the shipper had not finished (hard limit reached)."),
		deadLettered:  c("dead_lettered_lines_total", "Log lines the sink rejected on every attempt, written to the dead-letter file instead."),
		retries:       c("retries_total", "Documents sent again after a transport error, 429/5xx or a rejection."),
		rawFallbacks:  c("raw_fallbacks_total", "Documents with lifted JSON fields the sink rejected, re-sent as raw text."),
		setupFailures: c("setup_failures_total", "Starts at which the sink refused the index template or ILM policy (shipping went on without them)."),
		files: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "skiff", Subsystem: "logs", Name: "files_tailed",
			Help: "Log files being tailed."}),
	}
	if reg != nil {
		reg.MustRegister(m.shipped, m.duplicates, m.dropped, m.deadLettered, m.retries, m.rawFallbacks, m.setupFailures, m.files)
	}
	return m
}

// registerBuffered adds skiff_logs_inflight_bytes, read from used.
func (m *metrics) registerBuffered(reg prometheus.Registerer, used func() float64) {
	if reg == nil {
		return
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "skiff", Subsystem: "logs", Name: "inflight_bytes",
		Help: "Bytes held by log documents read but not yet acknowledged by the sink (bounded by the shipper's MaxInFlightBytes)."}, used))
}
