package metrics

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	"k8s.io/utils/ptr"
)

// testCollector is a Collector over listers filled by the test (nodes
// indexer; pods may be nil) instead of informers, with 15 s defaults; the
// test drives it with c.round. reg, when set, receives its metrics.
func testCollector(tb testing.TB, sc Scraper, nodes cache.Indexer, reg prometheus.Registerer) *Collector {
	tb.Helper()
	if _, err := New(Options{Scraper: sc}); err == nil {
		tb.Fatal("New accepted a nil client")
	}
	m, err := newAddonMetrics(reg)
	if err != nil {
		tb.Fatal(err)
	}
	c := &Collector{
		opts:  Options{Scraper: sc, Interval: DefaultInterval, Timeout: DefaultTimeout, Workers: DefaultWorkers, MaxStale: 2 * DefaultInterval},
		log:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		nodes: corelisters.NewNodeLister(nodes), pods: corelisters.NewPodLister(cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})),
		history: NewHistory(int(DefaultHistory / DefaultInterval)), metrics: m, state: map[string]*nodeState{},
	}
	c.usage = &usageCollector{c: c}
	if err := registerUsage(reg, c.usage); err != nil {
		tb.Fatal(err)
	}
	c.last.Store(&Snapshot{Nodes: map[string]*NodeUsage{}, Pods: map[string]*PodUsage{}, Volumes: map[string]*VolumeUsage{}})
	return c
}

// fakeAgents serves upstream v1alpha1 summaries (marshalled from
// k8s.io/kubelet's own types, so the JSON is the kubelet's) at
// /<node>/stats/summary over loopback HTTP; a node without a summary
// answers 503.
type fakeAgents struct {
	srv *httptest.Server
	mu  sync.Mutex
	sum map[string]*statsv1alpha1.Summary
}

func newFakeAgents(t *testing.T) *fakeAgents {
	f := &fakeAgents{sum: map[string]*statsv1alpha1.Summary{}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		node, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		f.mu.Lock()
		s := f.sum[node]
		b, err := json.Marshal(s)
		f.mu.Unlock()
		if s == nil || err != nil {
			http.Error(w, "agent down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAgents) set(node string, s *statsv1alpha1.Summary) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sum[node] = s
}

func (f *fakeAgents) scraper() *HTTPScraper {
	return &HTTPScraper{Client: f.srv.Client(), URL: func(n *corev1.Node) (string, error) {
		return f.srv.URL + "/" + n.Name + "/stats/summary", nil
	}}
}

func nodeIndexer(t *testing.T, names ...string) cache.Indexer {
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, n := range names {
		if err := idx.Add(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}); err != nil {
			t.Fatal(err)
		}
	}
	return idx
}

// summary is a node with one CPU/memory sample and the given pods.
func summary(node string, at time.Time, cpuSeconds float64, mem uint64, pods ...statsv1alpha1.PodStats) *statsv1alpha1.Summary {
	t := metav1.NewTime(at)
	return &statsv1alpha1.Summary{
		Node: statsv1alpha1.NodeStats{NodeName: node,
			CPU:    &statsv1alpha1.CPUStats{Time: t, UsageNanoCores: ptr.To(uint64(5e8)), UsageCoreNanoSeconds: ptr.To(uint64(cpuSeconds * 1e9))},
			Memory: &statsv1alpha1.MemoryStats{Time: t, WorkingSetBytes: ptr.To(mem)}},
		Pods: pods,
	}
}

// podStats is a pod of one container "c" with cpuSeconds of cumulative
// usage and mem working set, and the given volumes.
func podStats(ns, name string, at time.Time, cpuSeconds float64, mem uint64, vols ...statsv1alpha1.VolumeStats) statsv1alpha1.PodStats {
	t := metav1.NewTime(at)
	cpu := &statsv1alpha1.CPUStats{Time: t, UsageNanoCores: ptr.To(uint64(1e8)), UsageCoreNanoSeconds: ptr.To(uint64(cpuSeconds * 1e9))}
	memory := &statsv1alpha1.MemoryStats{Time: t, WorkingSetBytes: ptr.To(mem)}
	return statsv1alpha1.PodStats{
		PodRef:     statsv1alpha1.PodReference{Namespace: ns, Name: name, UID: "uid-" + name},
		Containers: []statsv1alpha1.ContainerStats{{Name: "c", CPU: cpu, Memory: memory}},
		CPU:        cpu, Memory: memory,
		VolumeStats: vols,
	}
}

// pvcVolume is a claim's volume entry; claim "" is a volume without a
// pvcRef (an emptyDir, a projected token).
func pvcVolume(name, ns, claim string, at time.Time, used, capacity uint64) statsv1alpha1.VolumeStats {
	v := statsv1alpha1.VolumeStats{Name: name, FsStats: statsv1alpha1.FsStats{Time: metav1.NewTime(at),
		UsedBytes: ptr.To(used), CapacityBytes: ptr.To(capacity), AvailableBytes: ptr.To(capacity - used - 1),
		Inodes: ptr.To(uint64(1000)), InodesUsed: ptr.To(uint64(10)), InodesFree: ptr.To(uint64(990))}}
	if claim != "" {
		v.PVCRef = &statsv1alpha1.PVCReference{Name: claim, Namespace: ns}
	}
	return v
}

func TestVolumeUsageFromSummaries(t *testing.T) {
	agents := newFakeAgents(t)
	c := testCollector(t, agents.scraper(), nodeIndexer(t, "n1", "n2"), nil)
	ctx := context.Background()
	t0 := time.Now().Add(-time.Minute)
	agents.set("n1", summary("n1", t0, 100, 1<<30,
		podStats("apps", "db-0", t0, 1, 64<<20,
			pvcVolume("data", "apps", "data-db-0", t0, 300<<20, 1<<30),
			pvcVolume("tmp", "", "", t0, 1<<20, 1<<30)), // no pvcRef: not a claim
		// Two pods mount "shared"; the newer sample wins.
		podStats("apps", "web-a", t0, 1, 32<<20, pvcVolume("shared", "apps", "shared", t0, 5<<20, 10<<20)),
	))
	agents.set("n2", summary("n2", t0, 100, 1<<30,
		podStats("apps", "web-b", t0.Add(time.Second), 1, 32<<20, pvcVolume("shared", "apps", "shared", t0.Add(time.Second), 6<<20, 10<<20)),
		// A volume without usedBytes is left out.
		podStats("other", "x", t0, 1, 32<<20, statsv1alpha1.VolumeStats{Name: "v", PVCRef: &statsv1alpha1.PVCReference{Name: "partial", Namespace: "other"},
			FsStats: statsv1alpha1.FsStats{Time: metav1.NewTime(t0), CapacityBytes: ptr.To(uint64(1))}}),
	))
	c.round(ctx)

	vols := c.Latest().Volumes
	if len(vols) != 2 {
		t.Fatalf("volumes %v, want apps/data-db-0 and apps/shared", keys(vols))
	}
	db := vols["apps/data-db-0"]
	want := VolumeUsage{Namespace: "apps", Claim: "data-db-0", Pod: "apps/db-0", Node: "n1", UsedBytes: 300 << 20, CapacityBytes: 1 << 30,
		AvailableBytes: 1<<30 - 300<<20 - 1, Inodes: 1000, InodesUsed: 10, InodesFree: 990}
	if db == nil || !db.Time.Equal(t0.Truncate(time.Second)) {
		t.Fatalf("data-db-0 = %+v", db)
	}
	got := *db
	got.Time = time.Time{}
	if got != want {
		t.Errorf("data-db-0 = %+v\nwant %+v", got, want)
	}
	if sh := vols["apps/shared"]; sh == nil || sh.Pod != "apps/web-b" || sh.Node != "n2" || sh.UsedBytes != 6<<20 {
		t.Errorf("shared = %+v, want web-b's newer sample", sh)
	}

	// n1 stops answering: its claim is kept, marked stale, until MaxStale.
	agents.set("n1", nil)
	c.round(ctx)
	if db := c.Latest().Volumes["apps/data-db-0"]; db == nil || !db.Stale || db.UsedBytes != 300<<20 {
		t.Errorf("after a failed scrape: %+v", db)
	}
	if sh := c.Latest().Volumes["apps/shared"]; sh == nil || sh.Stale {
		t.Errorf("shared from the answering node: %+v", sh)
	}
	c.state["n1"].lastOK = time.Now().Add(-time.Hour)
	c.round(ctx)
	if db, ok := c.Latest().Volumes["apps/data-db-0"]; ok {
		t.Errorf("kept past MaxStale: %+v", db)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
