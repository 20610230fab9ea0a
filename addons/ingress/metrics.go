package ingress

import (
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

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

// routeStats caches the metric children of one route and backend so that
// a request does not hash its label values: the duration observer and the
// counter of the last status code seen.
type routeStats struct {
	namespace, ingress, service string
	backend                     *backend
	once                        sync.Once
	duration                    prometheus.Observer
	last                        atomic.Pointer[codeCounter]
}

type codeCounter struct {
	code int
	c    prometheus.Counter
}

func (rs *routeStats) init(m *metrics) {
	rs.once.Do(func() {
		rs.duration = m.duration.WithLabelValues(rs.namespace, rs.ingress, rs.service)
	})
}

// counter returns requests_total's child for this route and code.
func (rs *routeStats) counter(m *metrics, code int) prometheus.Counter {
	if cc := rs.last.Load(); cc != nil && cc.code == code {
		return cc.c
	}
	cc := &codeCounter{code: code, c: m.requests.WithLabelValues(rs.namespace, rs.ingress, rs.service, strconv.Itoa(code))}
	rs.last.Store(cc)
	return cc.c
}

// stats returns the cached metrics of a request's route and backend (the
// route's own or its canary's); requests no rule matched share one set.
func (p *Proxy) stats(st *reqState) *routeStats {
	rt := st.route
	if rt == nil {
		p.noRoute.init(p.m)
		return &p.noRoute
	}
	i := 0
	if st.backend != rt.backend {
		i = 1
	}
	var rs *routeStats
	if rt.stats != nil {
		rs = rt.stats[i].Load()
	}
	if rs == nil || rs.backend != st.backend {
		rs = &routeStats{namespace: rt.ingress.Namespace, ingress: rt.ingress.Name}
		if st.backend != nil {
			rs.service = st.backend.service
		}
		rs.backend = st.backend
		rs.init(p.m)
		if rt.stats != nil {
			rt.stats[i].Store(rs)
		}
	}
	return rs
}
