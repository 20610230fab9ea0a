package federation

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiffhq/skiff/internal/promreg"
)

// metrics are the add-on's Prometheus series (namespace skiff, subsystem
// federation).
type metrics struct {
	memberReady *prometheus.GaugeVec
	errors      *prometheus.CounterVec
	reconciles  *prometheus.CounterVec
}

// newMetrics registers the add-on's series with reg (nil: not registered).
// Series a previous Controller registered with reg are reused, so a
// process may build the add-on again (a server re-elected) with one
// registry.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		memberReady: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "skiff", Subsystem: Name, Name: "member_ready",
			Help: "1 when the member cluster is Ready, else 0."}, []string{"member"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "skiff", Subsystem: Name, Name: "apply_errors_total",
			Help: "Failed applies of host objects to a member cluster."}, []string{"member"}),
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "skiff", Subsystem: Name, Name: "reconciles_total",
			Help: "Reconciles of federated host objects by result."}, []string{"result"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.memberReady, err = promreg.Register(reg, m.memberReady); err != nil {
		return nil, err
	}
	if m.errors, err = promreg.Register(reg, m.errors); err != nil {
		return nil, err
	}
	if m.reconciles, err = promreg.Register(reg, m.reconciles); err != nil {
		return nil, err
	}
	return m, nil
}
