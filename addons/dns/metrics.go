package dns

import (
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the add-on's Prometheus series (namespace skiff, subsystem dns).
type metrics struct {
	requests    *prometheus.CounterVec
	responses   *prometheus.CounterVec
	cacheHits   prometheus.Counter
	cacheMisses prometheus.Counter
	fwdErrors   prometheus.Counter
	latency     *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "skiff", Subsystem: "dns", Name: "requests_total",
			Help: "DNS requests answered, by transport (udp, tcp).",
		}, []string{"proto"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "skiff", Subsystem: "dns", Name: "responses_total",
			Help: "DNS responses, by rcode (NOERROR, NXDOMAIN, ...).",
		}, []string{"rcode"}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "skiff", Subsystem: "dns", Name: "cache_hits_total",
			Help: "Forwarded queries answered from the cache.",
		}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "skiff", Subsystem: "dns", Name: "cache_misses_total",
			Help: "Forwarded queries that missed the cache.",
		}),
		fwdErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "skiff", Subsystem: "dns", Name: "forward_errors_total",
			Help: "Upstream exchanges that failed (timeouts, connection errors).",
		}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "skiff", Subsystem: "dns", Name: "request_duration_seconds",
			Help:    "Time to answer a DNS request, by source (cluster, forward, error).",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"source"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.responses, m.cacheHits, m.cacheMisses, m.fwdErrors, m.latency)
	}
	return m
}

func (m *metrics) observe(proto, source string, rcode int, d time.Duration) {
	m.requests.WithLabelValues(proto).Inc()
	rc, ok := mdns.RcodeToString[rcode]
	if !ok {
		rc = "OTHER"
	}
	m.responses.WithLabelValues(rc).Inc()
	m.latency.WithLabelValues(source).Observe(d.Seconds())
}

func (m *metrics) cacheHit()     { m.cacheHits.Inc() }
func (m *metrics) cacheMiss()    { m.cacheMisses.Inc() }
func (m *metrics) forwardError() { m.fwdErrors.Inc() }
