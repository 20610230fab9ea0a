package ingress

import "github.com/prometheus/client_golang/prometheus"

// metrics are the add-on's Prometheus series (namespace skiff, subsystem
// ingress).
type metrics struct {
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	connectErrors *prometheus.CounterVec
	reloads       prometheus.Counter
	reloadSeconds prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "skiff", Subsystem: "ingress", Name: "requests_total",
			Help: "Requests answered, by Ingress namespace and name, service and status code (empty ingress: no rule matched).",
		}, []string{"namespace", "ingress", "service", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "skiff", Subsystem: "ingress", Name: "request_duration_seconds",
			Help:    "Time from request to the end of the answer, by Ingress and service.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"namespace", "ingress", "service"}),
		connectErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "skiff", Subsystem: "ingress", Name: "upstream_connect_errors_total",
			Help: "Connections to endpoints that failed (the endpoint is ejected for a while), by service.",
		}, []string{"namespace", "service"}),
		reloads: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "skiff", Subsystem: "ingress", Name: "table_swaps_total",
			Help: "Route tables built and swapped in.",
		}),
		reloadSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "skiff", Subsystem: "ingress", Name: "table_build_seconds",
			Help:    "Time to build one route table from the informer caches.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.connectErrors, m.reloads, m.reloadSeconds)
	return m
}
