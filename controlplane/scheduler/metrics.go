package scheduler

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the scheduler's Prometheus metrics, named as upstream's.
type metrics struct {
	reg              *prometheus.Registry
	attemptDuration  *prometheus.HistogramVec
	e2eDuration      *prometheus.HistogramVec
	sliDuration      *prometheus.HistogramVec
	attempts         *prometheus.CounterVec
	preemptionTotal  prometheus.Counter
	preemptionVictim prometheus.Histogram
}

func newMetrics(q *schedulingQueue, withProcess bool) *metrics {
	reg := prometheus.NewRegistry()
	buckets := prometheus.ExponentialBuckets(0.001, 2, 15)
	m := &metrics{
		reg: reg,
		attemptDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Subsystem: "scheduler", Name: "scheduling_attempt_duration_seconds",
			Help:    "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
			Buckets: buckets,
		}, []string{"result", "profile"}),
		e2eDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Subsystem: "scheduler", Name: "e2e_scheduling_duration_seconds",
			Help:    "E2e scheduling latency in seconds: from the pod entering the queue to its binding, per attempt",
			Buckets: buckets,
		}, []string{"result", "profile"}),
		sliDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Subsystem: "scheduler", Name: "pod_scheduling_sli_duration_seconds",
			Help:    "E2e latency for a pod being scheduled, from the time the pod enters the scheduling queue until it is bound",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 20),
		}, []string{"attempts"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Subsystem: "scheduler", Name: "schedule_attempts_total",
			Help: "Number of attempts to schedule pods, by the result: 'unschedulable', 'error' or 'scheduled'",
		}, []string{"result", "profile"}),
		preemptionTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Subsystem: "scheduler", Name: "preemption_attempts_total", Help: "Total preemption attempts in the cluster till now",
		}),
		preemptionVictim: prometheus.NewHistogram(prometheus.HistogramOpts{
			Subsystem: "scheduler", Name: "preemption_victims", Help: "Number of selected preemption victims",
			Buckets: prometheus.ExponentialBuckets(1, 2, 7),
		}),
	}
	reg.MustRegister(m.attemptDuration, m.e2eDuration, m.sliDuration, m.attempts, m.preemptionTotal, m.preemptionVictim)
	for _, name := range []string{"active", "backoff", "unschedulable"} {
		name := name
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Subsystem: "scheduler", Name: "pending_pods",
			Help:        "Number of pending pods, by the queue type. 'active' means number of pods in activeQ; 'backoff' means number of pods in backoffQ; 'unschedulable' means number of pods in unschedulablePods.",
			ConstLabels: prometheus.Labels{"queue": name},
		}, func() float64 {
			a, b, u := q.Len()
			switch name {
			case "active":
				return float64(a)
			case "backoff":
				return float64(b)
			}
			return float64(u)
		}))
	}
	if withProcess {
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
