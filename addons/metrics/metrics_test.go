package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// The add-on built again in one process (re-elected) must keep exporting:
// the second build's counts are the ones the registry gathers.
func TestAddonMetricsSurviveRebuild(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := newAddonMetrics(reg); err != nil {
		t.Fatal(err)
	}
	second, err := newAddonMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	second.scrapeErrors.Add(3)
	second.staleNodes.Set(2)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		switch {
		case m.Counter != nil:
			got[mf.GetName()] = m.GetCounter().GetValue()
		case m.Gauge != nil:
			got[mf.GetName()] = m.GetGauge().GetValue()
		}
	}
	if got["skiff_metrics_scrape_errors_total"] != 3 || got["skiff_metrics_stale_nodes"] != 2 {
		t.Fatalf("gathered %v, want scrape_errors_total 3 and stale_nodes 2", got)
	}
}
