package dns

import (
	"sync/atomic"
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

	// The fast path's series, resolved on first use (no label lookup per
	// query; a series appears only once something was counted in it).
	udpRequests atomic.Pointer[prometheus.Counter]
	rcodes      [16]atomic.Pointer[prometheus.Counter] // by the header's 4-bit rcode
	fastLatency [2]atomic.Pointer[prometheus.Observer] // fastCluster, fastForward
}

// Sources of a fast-path answer (indexes of metrics.fastLatency).
const (
	fastCluster = iota
	fastForward
)

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

// child returns the series cached in p, resolving it with mk the first time.
func child[T any](p *atomic.Pointer[T], mk func() T) T {
	if c := p.Load(); c != nil {
		return *c
	}
	c := mk()
	p.Store(&c)
	return c
}

func rcodeName(rcode int) string {
	if rc, ok := mdns.RcodeToString[rcode]; ok {
		return rc
	}
	return "OTHER"
}

// fastBatch tallies the fast path's answers of one batch, so that each
// counter is added to once per batch.
type fastBatch struct {
	rcodes  [16]int32
	sources [2]int32 // fastCluster, fastForward
}

func (b *fastBatch) add(source, rcode int) {
	b.rcodes[rcode&0xF]++
	b.sources[source]++
}

// observeFast counts a batch of UDP answers of the fast path, each of
// which took d, and resets b.
func (m *metrics) observeFast(b *fastBatch, d time.Duration) {
	n := b.sources[fastCluster] + b.sources[fastForward]
	if n == 0 {
		return
	}
	child(&m.udpRequests, func() prometheus.Counter { return m.requests.WithLabelValues("udp") }).Add(float64(n))
	for rc, k := range b.rcodes {
		if k > 0 {
			child(&m.rcodes[rc], func() prometheus.Counter { return m.responses.WithLabelValues(rcodeName(rc)) }).Add(float64(k))
		}
	}
	if k := b.sources[fastForward]; k > 0 {
		m.cacheHits.Add(float64(k))
	}
	for source, k := range b.sources {
		if k == 0 {
			continue
		}
		src := srcCluster
		if source == fastForward {
			src = srcForward
		}
		o := child(&m.fastLatency[source], func() prometheus.Observer { return m.latency.WithLabelValues(src) })
		for range k {
			o.Observe(d.Seconds())
		}
	}
	*b = fastBatch{}
}

func (m *metrics) observe(proto, source string, rcode int, d time.Duration) {
	m.requests.WithLabelValues(proto).Inc()
	m.responses.WithLabelValues(rcodeName(rcode)).Inc()
	m.latency.WithLabelValues(source).Observe(d.Seconds())
}

func (m *metrics) cacheHit()     { m.cacheHits.Inc() }
func (m *metrics) cacheMiss()    { m.cacheMisses.Inc() }
func (m *metrics) forwardError() { m.fwdErrors.Inc() }
