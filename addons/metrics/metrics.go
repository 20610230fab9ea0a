package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
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
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.roundSeconds, m.scrapeErrors, m.staleNodes, m.historySeries} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
		}
	}
	return m, nil
}
