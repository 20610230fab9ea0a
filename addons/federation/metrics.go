package federation

import "github.com/prometheus/client_golang/prometheus"

// metrics are the add-on's Prometheus series (namespace skiff, subsystem
// federation).
type metrics struct {
	memberReady *prometheus.GaugeVec
	errors      *prometheus.CounterVec
	reconciles  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		memberReady: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "skiff", Subsystem: Name, Name: "member_ready",
			Help: "1 when the member cluster is Ready, else 0."}, []string{"member"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "skiff", Subsystem: Name, Name: "apply_errors_total",
			Help: "Failed applies of host objects to a member cluster."}, []string{"member"}),
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "skiff", Subsystem: Name, Name: "reconciles_total",
			Help: "Reconciles of federated host objects by result."}, []string{"result"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.memberReady, m.errors, m.reconciles} {
			_ = reg.Register(c)
		}
	}
	return m
}
