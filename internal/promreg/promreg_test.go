package promreg

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func newCounter() prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: "restarts_total", Help: "h"})
}

// A second registration of the same description hands back the first
// collector, so counts made after a restart are the ones exported.
func TestRegisterReusesExisting(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	first, err := Register(reg, newCounter())
	if err != nil {
		t.Fatal(err)
	}
	second, err := Register(reg, newCounter())
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Fatal("second registration did not return the registered collector")
	}
	second.Inc()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 1 || mfs[0].GetMetric()[0].GetCounter().GetValue() != 1 {
		t.Fatalf("exported %v, want restarts_total 1", mfs)
	}
}

// A collector of another type under the same name is an error, not a
// silent drop.
func TestRegisterConflict(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := Register(reg, newCounter()); err != nil {
		t.Fatal(err)
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "restarts_total", Help: "other"})
	if _, err := Register(reg, g); err == nil {
		t.Fatal("conflicting registration succeeded")
	}
}

func TestRegisterNilRegistry(t *testing.T) {
	c := newCounter()
	got, err := Register[prometheus.Counter](nil, c)
	if err != nil || got != c {
		t.Fatalf("got %v, %v", got, err)
	}
}
