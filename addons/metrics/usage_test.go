package metrics

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/utils/ptr"
)

// scrapeText reads a registry through promhttp over loopback HTTP, as
// Prometheus would, and parses the text exposition.
func scrapeText(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s: %s", resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, b)
	}
	return fams
}

// seriesOf flattens a family to "name{l=v,...}" → sample.
func seriesOf(fams map[string]*dto.MetricFamily, name string) map[string]*dto.Metric {
	out := map[string]*dto.Metric{}
	f := fams[name]
	if f == nil {
		return out
	}
	for _, m := range f.Metric {
		var ls []string
		for _, l := range m.Label {
			ls = append(ls, l.GetName()+"="+l.GetValue())
		}
		sort.Strings(ls)
		out["{"+strings.Join(ls, ",")+"}"] = m
	}
	return out
}

func value(m *dto.Metric) float64 {
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func TestUsageMetricsInKubeletNames(t *testing.T) {
	agents := newFakeAgents(t)
	reg := prometheus.NewPedanticRegistry()
	c := testCollector(t, agents.scraper(), nodeIndexer(t, "n1", "n2"), reg)
	ctx := context.Background()
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second) // the summary's times are RFC 3339 seconds
	db := podStats("apps", "db-0", t0, 2.5, 64<<20, pvcVolume("data", "apps", "data-db-0", t0, 300<<20, 1<<30))
	// The pod's own cgroup counts more than its containers (pause, exec'd
	// processes): pod_* series report the pod's values.
	db.CPU = ptr.To(*db.CPU)
	db.CPU.UsageCoreNanoSeconds = ptr.To(uint64(3e9))
	db.Memory = ptr.To(*db.Memory)
	db.Memory.WorkingSetBytes = ptr.To(uint64(70 << 20))
	agents.set("n1", summary("n1", t0, 100, 1<<30, db))
	agents.set("n2", summary("n2", t0, 200, 2<<30, podStats("web", "w", t0, 7, 32<<20)))
	c.round(ctx)

	fams := scrapeText(t, reg)
	want := []struct {
		name, labels string
		v            float64
		counter      bool
		stamped      bool
	}{
		{"node_cpu_usage_seconds_total", "{node=n1}", 100, true, true},
		{"node_cpu_usage_seconds_total", "{node=n2}", 200, true, true},
		{"node_memory_working_set_bytes", "{node=n1}", 1 << 30, false, true},
		{"container_cpu_usage_seconds_total", "{container=c,namespace=apps,node=n1,pod=db-0}", 2.5, true, true},
		{"container_memory_working_set_bytes", "{container=c,namespace=apps,node=n1,pod=db-0}", 64 << 20, false, true},
		{"container_cpu_usage_seconds_total", "{container=c,namespace=web,node=n2,pod=w}", 7, true, true},
		{"pod_cpu_usage_seconds_total", "{namespace=apps,node=n1,pod=db-0}", 3, true, true},
		{"pod_memory_working_set_bytes", "{namespace=apps,node=n1,pod=db-0}", 70 << 20, false, true},
		{"pod_memory_working_set_bytes", "{namespace=web,node=n2,pod=w}", 32 << 20, false, true},
		{"kubelet_volume_stats_used_bytes", "{namespace=apps,persistentvolumeclaim=data-db-0}", 300 << 20, false, false},
		{"kubelet_volume_stats_capacity_bytes", "{namespace=apps,persistentvolumeclaim=data-db-0}", 1 << 30, false, false},
		{"kubelet_volume_stats_available_bytes", "{namespace=apps,persistentvolumeclaim=data-db-0}", 1<<30 - 300<<20 - 1, false, false},
		{"kubelet_volume_stats_inodes_used", "{namespace=apps,persistentvolumeclaim=data-db-0}", 10, false, false},
	}
	for _, w := range want {
		m := seriesOf(fams, w.name)[w.labels]
		if m == nil {
			t.Errorf("no %s%s; have %v", w.name, w.labels, keys(seriesOf(fams, w.name)))
			continue
		}
		if got := value(m); got != w.v {
			t.Errorf("%s%s = %v, want %v", w.name, w.labels, got, w.v)
		}
		if (m.Counter != nil) != w.counter {
			t.Errorf("%s: counter %v, want %v", w.name, m.Counter != nil, w.counter)
		}
		if w.stamped && m.GetTimestampMs() != t0.UnixMilli() || !w.stamped && m.TimestampMs != nil {
			t.Errorf("%s%s: timestamp %v, want %v (stamped %v)", w.name, w.labels, m.GetTimestampMs(), t0.UnixMilli(), w.stamped)
		}
	}
	if n := len(seriesOf(fams, "container_cpu_usage_seconds_total")); n != 2 {
		t.Errorf("%d container CPU series, want 2", n)
	}

	// A second scrape of the same snapshot reuses its samples.
	a, b := c.usage.current(), c.usage.current()
	if len(a) == 0 || &a[0] != &b[0] {
		t.Error("samples rebuilt for the same snapshot")
	}

	// n1 stops answering: upstream has no sample of a kubelet that does
	// not answer, so its node, pods and claims leave /metrics (though
	// metrics.k8s.io still serves them, marked stale).
	agents.set("n1", nil)
	c.round(ctx)
	if c.Latest().Nodes["n1"] == nil || !c.Latest().Nodes["n1"].Stale {
		t.Fatalf("n1 not stale: %+v", c.Latest().Nodes["n1"])
	}
	fams = scrapeText(t, reg)
	for name := range fams {
		for l := range seriesOf(fams, name) {
			if strings.Contains(l, "node=n1") || strings.Contains(l, "namespace=apps") {
				t.Errorf("stale node's series still exported: %s%s", name, l)
			}
		}
	}
	if seriesOf(fams, "node_cpu_usage_seconds_total")["{node=n2}"] == nil {
		t.Error("n2 lost")
	}
}

// BenchmarkUsageCollect is a /metrics scrape of 1,000 nodes × 30 pods from
// the latest snapshot (samples already built).
func BenchmarkUsageCollect(b *testing.B) {
	c, sc := scaleCollector(b, 1000, 30, 2)
	c.round(context.Background())
	sc.round.Store(1)
	c.round(context.Background())
	reg := prometheus.NewRegistry()
	reg.MustRegister(c.usage)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fams, err := reg.Gather()
		if err != nil || len(fams) != 6 {
			b.Fatal(err, len(fams))
		}
	}
	b.ReportMetric(float64(len(c.usage.current())), "series")
}
