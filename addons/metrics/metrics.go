package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiffhq/skiff/internal/promreg"
)

// addonMetrics are the add-on's own metrics (namespace skiff, subsystem
// metrics).
type addonMetrics struct {
	roundSeconds  prometheus.Histogram
	scrapeErrors  prometheus.Counter
	staleNodes    prometheus.Gauge
	historySeries prometheus.Gauge
}

func newAddonMetrics(reg prometheus.Registerer) (*addonMetrics, error) {
	m := &addonMetrics{
		roundSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "skiff", Subsystem: "metrics", Name: "scrape_round_duration_seconds",
			Help: "Wall time of one scrape round over every node.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
		}),
		scrapeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "skiff", Subsystem: "metrics", Name: "scrape_errors_total", Help: "Node summary scrapes that failed.",
		}),
		staleNodes: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "skiff", Subsystem: "metrics", Name: "stale_nodes", Help: "Nodes whose latest scrape failed.",
		}),
		historySeries: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "skiff", Subsystem: "metrics", Name: "history_series", Help: "Series kept in the history.",
		}),
	}
	// Collectors an earlier run registered with reg are reused (an
	// elected add-on restarted in the same process keeps exporting).
	var err error
	if m.roundSeconds, err = promreg.Register(reg, m.roundSeconds); err != nil {
		return nil, err
	}
	if m.scrapeErrors, err = promreg.Register(reg, m.scrapeErrors); err != nil {
		return nil, err
	}
	if m.staleNodes, err = promreg.Register(reg, m.staleNodes); err != nil {
		return nil, err
	}
	if m.historySeries, err = promreg.Register(reg, m.historySeries); err != nil {
		return nil, err
	}
	return m, nil
}
