package backend_test

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/addons/metrics"
	"github.com/skiffhq/skiff/backend"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// agents plays the node agents for a real metrics collector: node n1
// runs pod team/p1 (0.5 cores, 100 MiB, claim team/data mounted) and
// other/p2 (0.25 cores, 50 MiB); the node uses 1 core and 1 GiB. CPU is
// reported as a cumulative counter, as the agents do, so the collector
// derives the rates. fail makes n1's scrapes fail (a stale node).
type agents struct {
	start time.Time
	mu    sync.Mutex
	fail  bool
}

func (a *agents) setFail(v bool) {
	a.mu.Lock()
	a.fail = v
	a.mu.Unlock()
}

func (a *agents) Scrape(ctx context.Context, node *corev1.Node) (*metrics.Summary, error) {
	a.mu.Lock()
	fail := a.fail
	a.mu.Unlock()
	if fail || node.Name != "n1" {
		return nil, errors.New("agent unreachable")
	}
	now := time.Now()
	el := now.Sub(a.start).Seconds()
	cpu := func(cores float64) *metrics.CPUSample {
		return &metrics.CPUSample{Time: metrics.Time{Time: now}, UsageNanoCores: ptr.To(uint64(cores * 1e9)),
			UsageCoreNanoSeconds: ptr.To(uint64(cores * el * 1e9))}
	}
	mem := func(b uint64) *metrics.MemorySample { return &metrics.MemorySample{WorkingSetBytes: ptr.To(b)} }
	s := &metrics.Summary{Node: metrics.NodeSummary{NodeName: "n1", CPU: cpu(1), Memory: mem(1 << 30)}}
	pod := func(ns, name string, cores float64, b uint64) metrics.PodSummary {
		var p metrics.PodSummary
		p.PodRef.Namespace, p.PodRef.Name, p.PodRef.UID = ns, name, ns+"-"+name
		p.Containers = []metrics.ContainerSummary{{Name: "c1", CPU: cpu(cores), Memory: mem(b)}}
		return p
	}
	p1 := pod("team", "p1", 0.5, 100<<20)
	v := metrics.VolumeSample{Time: metrics.Time{Time: now}, Name: "data", UsedBytes: ptr.To(uint64(10 << 20)), CapacityBytes: ptr.To(uint64(1 << 30))}
	v.PVCRef = &struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	}{Name: "data", Namespace: "team"}
	p1.Volumes = []metrics.VolumeSample{v}
	s.Pods = []metrics.PodSummary{p1, pod("other", "p2", 0.25, 50<<20)}
	return s, nil
}

// metricsFrame is a metrics message (or an error/revoked one).
type metricsFrame struct {
	Type      string  `json:"type"`
	ID        string  `json:"id"`
	Code      int     `json:"code"`
	Message   string  `json:"message"`
	Available bool    `json:"available"`
	Interval  float64 `json:"interval"`
	Time      int64   `json:"time"`
	Series    []struct {
		Name   string    `json:"name"`
		T      []int64   `json:"t"`
		CPU    []float64 `json:"cpu"`
		Memory []float64 `json:"memory"`
	} `json:"series"`
	Latest *struct {
		CPU, Memory float64
		Time        int64
		Stale       bool
		LastError   string
	} `json:"latest"`
	Top *struct {
		CPU, Memory []struct {
			Namespace, Name string
			CPU, Memory     float64
		}
	} `json:"top"`
	Volumes map[string]struct{ Used, Capacity uint64 } `json:"volumes"`
}

// nextFrame waits for a message of feed id that satisfies ok (30 s: a
// scrape round is 1 s here, but the machine may be loaded).
func (c *ws) nextFrame(what, id string, ok func(f metricsFrame) bool) metricsFrame {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_ = c.conn.SetReadDeadline(deadline)
		var f metricsFrame
		if err := c.conn.ReadJSON(&f); err != nil {
			c.t.Fatalf("waiting for %s: %v", what, err)
		}
		if f.ID == id && ok(f) {
			return f
		}
	}
}

func feed(id, kind, ns, name string) map[string]any {
	return map[string]any{"type": "metrics", "id": id, "kind": kind, "namespace": ns, "name": name}
}

func near(got, want float64) bool { return math.Abs(got-want) <= want*0.01 }

// TestMetricsFeed runs a real metrics collector (its scraper plays the
// node agent) in the backend's process and checks the websocket feed:
// history and latest usage for each kind, a new message on every scrape
// round, a stale node marked and never drawn as zero, PVC usage,
// authorization as the user (metrics.k8s.io access reviews, revoked with
// the RoleBinding) and, without a collector, a clear "unavailable".
func TestMetricsFeed(t *testing.T) {
	standalone := start(t, func(o *backend.Options) { o.ReauthInterval = time.Hour })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ag := &agents{start: time.Now().Add(-time.Minute)}
	col, err := metrics.New(metrics.Options{Client: standalone.ts.Client, Scraper: ag, Interval: time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = col.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if _, err := standalone.ts.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e := backendOn(t, standalone.ts, func(o *backend.Options) {
		o.Metrics, o.MetricsPoll, o.ReauthInterval = col, 50*time.Millisecond, time.Hour
	})

	t.Run("standalone dashboard: history unavailable", func(t *testing.T) {
		c := standalone.login(adminToken).ws(t)
		c.send(feed("m1", "pod", "team", "p1"))
		f := c.nextFrame("unavailable", "m1", func(metricsFrame) bool { return true })
		if f.Type != "metrics" || f.Available || f.Message != backend.MetricsUnavailable {
			t.Fatalf("without a collector: %+v", f)
		}
	})

	admin := e.login(adminToken).ws(t)
	t.Run("pod history and containers, updated every round", func(t *testing.T) {
		admin.send(feed("pod", "pod", "team", "p1"))
		first := admin.nextFrame("pod points", "pod", func(f metricsFrame) bool {
			return f.Type == "metrics" && len(f.Series) == 2 && len(f.Series[0].T) >= 2
		})
		if !first.Available || first.Interval != 1 || first.Series[0].Name != "p1" || first.Series[1].Name != "c1" {
			t.Fatalf("pod feed: %+v", first)
		}
		s := first.Series[0]
		if !near(s.CPU[len(s.CPU)-1], 0.5) || s.Memory[len(s.Memory)-1] != 100<<20 || !near(first.Latest.CPU, 0.5) {
			t.Fatalf("pod usage: cpu %v memory %v latest %+v, want 0.5 cores and 100 MiB", s.CPU, s.Memory, first.Latest)
		}
		next := admin.nextFrame("the next round", "pod", func(f metricsFrame) bool { return f.Time > first.Time })
		if n := next.Series[0].T; n[len(n)-1] <= s.T[len(s.T)-1] {
			t.Fatalf("a new round added no point: %v then %v", s.T, n)
		}
	})

	t.Run("namespace, cluster, top and volumes", func(t *testing.T) {
		admin.send(feed("ns", "namespace", "team", ""))
		f := admin.nextFrame("namespace", "ns", func(f metricsFrame) bool { return len(f.Series) == 1 && len(f.Series[0].T) > 0 })
		if got := f.Series[0].CPU[len(f.Series[0].CPU)-1]; !near(got, 0.5) {
			t.Fatalf("namespace team cpu %v, want 0.5 (p1 only)", got)
		}
		admin.send(feed("cl", "cluster", "", ""))
		f = admin.nextFrame("cluster", "cl", func(f metricsFrame) bool { return len(f.Series) == 1 && len(f.Series[0].T) > 0 })
		if got := f.Series[0].CPU[len(f.Series[0].CPU)-1]; !near(got, 1) || !near(f.Latest.Memory, 1<<30) {
			t.Fatalf("cluster cpu %v latest %+v, want 1 core, 1 GiB", got, f.Latest)
		}
		top := feed("top", "top", "", "")
		top["limit"] = 1
		admin.send(top)
		f = admin.nextFrame("top", "top", func(f metricsFrame) bool { return f.Top != nil && len(f.Top.CPU) > 0 })
		if len(f.Top.CPU) != 1 || f.Top.CPU[0].Name != "p1" || len(f.Top.Memory) != 1 || f.Top.Memory[0].Name != "p1" {
			t.Fatalf("top 1: %+v", f.Top)
		}
		admin.send(feed("vol", "volumes", "team", ""))
		f = admin.nextFrame("volumes", "vol", func(f metricsFrame) bool { return len(f.Volumes) > 0 })
		if v := f.Volumes["team/data"]; v.Used != 10<<20 || v.Capacity != 1<<30 {
			t.Fatalf("volume usage %+v, want 10 MiB of 1 GiB", f.Volumes)
		}
	})

	t.Run("bad kind", func(t *testing.T) {
		admin.send(feed("bad", "galaxy", "", ""))
		f := admin.nextFrame("error", "bad", func(f metricsFrame) bool { return f.Type == "error" })
		if f.Code != 400 || !strings.Contains(f.Message, "unknown kind") {
			t.Fatalf("bad kind: %+v", f)
		}
	})

	t.Run("authorized as the user", func(t *testing.T) {
		viewer := e.login(viewerToken).ws(t)
		viewer.send(feed("p", "pod", "team", "p1"))
		f := viewer.nextFrame("refusal", "p", func(metricsFrame) bool { return true })
		if f.Type != "error" || f.Code != 403 || f.Message != "viewer cannot get pods.metrics.k8s.io in namespace team" {
			t.Fatalf("viewer without metrics access: %+v", f)
		}
		if _, err := e.ts.Client.RbacV1().Roles("team").Create(ctx, &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Name: "metrics"},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"metrics.k8s.io"}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.ts.Client.RbacV1().RoleBindings("team").Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "metrics"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "metrics"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "viewer"}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// The API server's authorizer sees the binding shortly after.
		deadline := time.Now().Add(30 * time.Second)
		for {
			viewer.send(feed("p", "pod", "team", "p1"))
			f = viewer.nextFrame("viewer's pod feed", "p", func(metricsFrame) bool { return true })
			if f.Type == "metrics" || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if f.Type != "metrics" || !f.Available {
			t.Fatalf("viewer with the metrics Role: %+v", f)
		}
		for _, c := range []struct{ kind, ns, name, want string }{
			{"pod", "other", "p2", "viewer cannot get pods.metrics.k8s.io in namespace other"},
			{"node", "", "n1", "viewer cannot get nodes.metrics.k8s.io at cluster scope"},
			{"cluster", "", "", "viewer cannot list nodes.metrics.k8s.io at cluster scope"},
			{"top", "", "", "viewer cannot list pods.metrics.k8s.io in all namespaces"},
		} {
			viewer.send(feed("x", c.kind, c.ns, c.name))
			f := viewer.nextFrame(c.kind, "x", func(metricsFrame) bool { return true })
			if f.Type != "error" || f.Code != 403 || f.Message != c.want {
				t.Errorf("viewer %s %s/%s: %+v, want 403 %q", c.kind, c.ns, c.name, f, c.want)
			}
		}
		viewer.send(feed("t", "top", "team", ""))
		f = viewer.nextFrame("viewer's top", "t", func(f metricsFrame) bool { return f.Type != "metrics" || (f.Top != nil && len(f.Top.CPU) > 0) })
		if f.Top == nil || len(f.Top.CPU) != 1 || f.Top.CPU[0].Namespace != "team" {
			t.Fatalf("viewer's top in team: %+v", f)
		}
		// Deleting the binding revokes the open feed.
		if err := e.ts.Client.RbacV1().RoleBindings("team").Delete(ctx, "metrics", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		f = viewer.nextFrame("revocation", "p", func(f metricsFrame) bool { return f.Type == "revoked" })
		if f.Code != 403 || !strings.Contains(f.Message, "viewer cannot get pods.metrics.k8s.io in namespace team") {
			t.Fatalf("revocation: %+v", f)
		}
	})

	t.Run("a stale node is marked, never zero", func(t *testing.T) {
		admin.send(feed("node", "node", "", "n1"))
		good := admin.nextFrame("node", "node", func(f metricsFrame) bool { return f.Latest != nil && len(f.Series) == 1 && len(f.Series[0].T) > 0 })
		if good.Latest.Stale || !near(good.Latest.CPU, 1) {
			t.Fatalf("node n1: %+v", good.Latest)
		}
		ag.setFail(true)
		stale := admin.nextFrame("a stale node", "node", func(f metricsFrame) bool { return f.Latest != nil && f.Latest.Stale })
		if !near(stale.Latest.CPU, 1) || stale.Latest.Memory != 1<<30 || stale.Latest.LastError == "" {
			t.Fatalf("stale node: %+v, want the last good values and the error", stale.Latest)
		}
		for _, c := range stale.Series[0].CPU {
			if c == 0 {
				t.Fatalf("a zero in the stale node's series: %v", stale.Series[0].CPU)
			}
		}
		ag.setFail(false)
	})
}
