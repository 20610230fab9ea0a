// Package integration tests the metrics add-on inside a real in-process
// `skiff server`: hollow nodes with synthetic summaries (this file) and a
// real node agent on containerd (agent_test.go), read through
// metrics.k8s.io with client-go and the real kubectl.
package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/skiffhq/skiff/addons/metrics"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/nodeagent/hollow"
	"github.com/skiffhq/skiff/server"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
	"k8s.io/utils/ptr"
)

// hollowEnv is a server whose metrics add-on scrapes hollow nodes through
// a loopback summary server; failing nodes answer 503.
type hollowEnv struct {
	srv     *testserver.Server
	cluster *hollow.Cluster
	mu      sync.Mutex
	down    map[string]bool
	written [][]byte // remote write requests (decoded snappy)
}

func startHollow(t *testing.T, nodes int) *hollowEnv {
	t.Helper()
	e := &hollowEnv{down: map[string]bool{}}
	var base atomic.Pointer[string]
	rw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		raw, err := snappy.Decode(nil, b)
		if err != nil || r.Header.Get("Content-Encoding") != "snappy" {
			http.Error(w, "not snappy", http.StatusBadRequest)
			return
		}
		e.mu.Lock()
		e.written = append(e.written, raw)
		e.mu.Unlock()
	}))
	t.Cleanup(rw.Close)
	e.srv = testserver.Start(t, func(c *server.Config) {
		c.MetricsRemoteWrite.URL = rw.URL + "/api/v1/write"
		c.MetricsResolution = time.Second
		c.MetricsScrapeURL = func(n *corev1.Node) (string, error) {
			b := base.Load()
			if b == nil {
				return "", fmt.Errorf("no summary server yet")
			}
			return *b + "/" + n.Name + "/stats/summary", nil
		}
	})
	// The hollow nodes run until ctx ends: the whole test.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	hc, err := hollow.Start(ctx, e.srv.Config, hollow.Options{Nodes: nodes, NamePrefix: fmt.Sprintf("mx-%d-", time.Now().UnixNano()%1e6), LeaseInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.Stop)
	e.cluster = hc
	h := hc.StatsHandler()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		node, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		e.mu.Lock()
		down := e.down[node]
		e.mu.Unlock()
		if down {
			http.Error(w, "node down", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	u := ts.URL
	base.Store(&u)
	return e
}

func (e *hollowEnv) setDown(node string, down bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.down[node] = down
}

func eventually(t *testing.T, d time.Duration, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func pod(ns, name, node string, labels map[string]string, containers ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{NodeName: node, TerminationGracePeriodSeconds: ptr.To[int64](0)}}
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c, Image: "busybox"})
	}
	return p
}

func kubectl(t *testing.T, s *testserver.Server, cache string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/kubectl", append([]string{"--kubeconfig", s.Kubeconfig(), "--cache-dir", cache}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestMetricsAPIWithHollowNodes(t *testing.T) {
	e := startHollow(t, 3)
	ctx := context.Background()
	cs := e.srv.Client
	nodes := e.cluster.NodeNames()
	ns := "metrics-hollow"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// web is a Deployment's pod (the workload series folds its ReplicaSet
	// into the Deployment); db and cache are bare pods on fixed nodes.
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](1),
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}}, Spec: pod("", "", "", nil, "app", "sidecar").Spec},
	}}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*corev1.Pod{pod(ns, "db", nodes[1], map[string]string{"app": "db"}, "db"), pod(ns, "cache", nodes[2], map[string]string{"app": "cache"}, "cache")} {
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	web := &corev1.Pod{}
	eventually(t, 30*time.Second, "the Deployment's pod runs", func() error {
		l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil || len(l.Items) != 1 || l.Items[0].Status.Phase != corev1.PodRunning {
			return fmt.Errorf("web pods: %v %v", err, l)
		}
		web = &l.Items[0]
		return nil
	})
	mc := e.srv.Metrics()
	if mc == nil {
		t.Fatal("metrics add-on not running")
	}
	rest := cs.CoreV1().RESTClient()
	getNodes := func(sel string) (*metricsv1beta1.NodeMetricsList, error) {
		var l metricsv1beta1.NodeMetricsList
		err := rest.Get().AbsPath("/apis/metrics.k8s.io/v1beta1/nodes").Param("labelSelector", sel).Do(ctx).Into(&l)
		return &l, err
	}
	getPods := func(ns, sel string) (*metricsv1beta1.PodMetricsList, error) {
		var l metricsv1beta1.PodMetricsList
		path := "/apis/metrics.k8s.io/v1beta1/pods"
		if ns != "" {
			path = "/apis/metrics.k8s.io/v1beta1/namespaces/" + ns + "/pods"
		}
		err := rest.Get().AbsPath(path).Param("labelSelector", sel).Do(ctx).Into(&l)
		return &l, err
	}

	eventually(t, 30*time.Second, "metrics of every node and pod", func() error {
		nl, err := getNodes("")
		if err != nil {
			return err
		}
		pl, err := getPods(ns, "")
		if err != nil {
			return err
		}
		if len(nl.Items) != 3 || len(pl.Items) != 3 {
			return fmt.Errorf("%d node metrics, %d pod metrics", len(nl.Items), len(pl.Items))
		}
		return nil
	})

	t.Run("list and get", func(t *testing.T) {
		nl, _ := getNodes("")
		for _, m := range nl.Items {
			if m.Usage.Cpu().IsZero() || m.Usage.Memory().IsZero() || m.Window.Duration <= 0 || m.Timestamp.IsZero() {
				t.Errorf("node %s: usage %v window %v", m.Name, m.Usage, m.Window)
			}
		}
		var pm metricsv1beta1.PodMetrics
		if err := rest.Get().AbsPath("/apis/metrics.k8s.io/v1beta1/namespaces", ns, "pods", web.Name).Do(ctx).Into(&pm); err != nil {
			t.Fatal(err)
		}
		if len(pm.Containers) != 2 || pm.Labels["app"] != "web" || pm.Containers[0].Usage.Cpu().IsZero() {
			t.Errorf("web pod metrics: %+v", pm)
		}
		// Synthetic containers use 5m..300m and 16..256 MiB.
		for _, c := range pm.Containers {
			if c.Usage.Cpu().MilliValue() < 3 || c.Usage.Cpu().MilliValue() > 310 || c.Usage.Memory().Value() < 16<<20 || c.Usage.Memory().Value() > 256<<20 {
				t.Errorf("container %s: implausible %v", c.Name, c.Usage)
			}
		}
		err := rest.Get().AbsPath("/apis/metrics.k8s.io/v1beta1/namespaces", ns, "pods", "nope").Do(ctx).Error()
		if !apierrors.IsNotFound(err) {
			t.Errorf("missing pod: %v", err)
		}
		err = rest.Get().AbsPath("/apis/metrics.k8s.io/v1beta1/nodes/nope").Do(ctx).Error()
		if !apierrors.IsNotFound(err) {
			t.Errorf("missing node: %v", err)
		}
		err = rest.Delete().AbsPath("/apis/metrics.k8s.io/v1beta1/nodes", nodes[0]).Do(ctx).Error()
		if !apierrors.IsMethodNotSupported(err) {
			t.Errorf("delete: %v", err)
		}
	})

	t.Run("label selectors", func(t *testing.T) {
		pl, err := getPods(ns, "app in (web,db)")
		if err != nil {
			t.Fatal(err)
		}
		if len(pl.Items) != 2 || pl.Items[0].Name != "db" || pl.Items[1].Name != web.Name {
			t.Errorf("pods app in (web,db): %v", names(pl.Items))
		}
		all, err := getPods("", "app=cache")
		if err != nil || len(all.Items) != 1 || all.Items[0].Namespace != ns {
			t.Errorf("all namespaces app=cache: %v %v", err, all)
		}
		nl, err := getNodes("kubernetes.io/hostname=" + nodes[1])
		if err != nil || len(nl.Items) != 1 || nl.Items[0].Name != nodes[1] {
			t.Errorf("node selector: %v %+v", err, nl)
		}
	})

	t.Run("discovery", func(t *testing.T) {
		rl, err := cs.Discovery().ServerResourcesForGroupVersion("metrics.k8s.io/v1beta1")
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, r := range rl.APIResources {
			got[r.Name] = r.Kind + fmt.Sprint(r.Namespaced)
		}
		if got["nodes"] != "NodeMetricsfalse" || got["pods"] != "PodMetricstrue" {
			t.Errorf("discovery: %v", got)
		}
	})

	t.Run("kubectl top", func(t *testing.T) {
		if _, err := os.Stat("/usr/bin/kubectl"); err != nil {
			t.Skip("kubectl not installed")
		}
		cache := filepath.Join(t.TempDir(), "cache")
		out, err := kubectl(t, e.srv, cache, "top", "nodes")
		if err != nil {
			t.Fatalf("kubectl top nodes: %v\n%s", err, out)
		}
		for _, n := range nodes {
			if !strings.Contains(out, n) {
				t.Errorf("kubectl top nodes lacks %s:\n%s", n, out)
			}
		}
		if !strings.Contains(out, "CPU(cores)") || !strings.Contains(out, "MEMORY(bytes)") {
			t.Errorf("kubectl top nodes:\n%s", out)
		}
		out, err = kubectl(t, e.srv, cache, "top", "pods", "-n", ns, "--containers")
		if err != nil {
			t.Fatalf("kubectl top pods: %v\n%s", err, out)
		}
		for _, want := range []string{web.Name, "sidecar", "app", "db", "cache"} {
			if !strings.Contains(out, want) {
				t.Errorf("kubectl top pods --containers lacks %s:\n%s", want, out)
			}
		}
		out, err = kubectl(t, e.srv, cache, "top", "pods", "-n", ns, "-l", "app=db")
		if err != nil || !strings.Contains(out, "db") || strings.Contains(out, "cache") {
			t.Errorf("kubectl top pods -l app=db: %v\n%s", err, out)
		}
		t.Logf("kubectl top pods:\n%s", out)
	})

	t.Run("history", func(t *testing.T) {
		h := mc.History()
		eventually(t, 10*time.Second, "three rounds of history", func() error {
			if n := len(h.Series(metrics.KindNode, nodes[0])); n < 3 {
				return fmt.Errorf("%d node points", n)
			}
			return nil
		})
		for _, k := range []struct {
			kind metrics.Kind
			key  string
		}{
			{metrics.KindPod, ns + "/" + web.Name}, {metrics.KindContainer, ns + "/" + web.Name + "/sidecar"},
			{metrics.KindNamespace, ns}, {metrics.KindWorkload, ns + "/Deployment/web"},
		} {
			pts := h.Series(k.kind, k.key)
			if len(pts) == 0 || pts[len(pts)-1].CPU <= 0 || pts[len(pts)-1].Memory <= 0 {
				t.Errorf("%v %s: %v", k.kind, k.key, pts)
			}
		}
		ns3 := h.Series(metrics.KindNamespace, ns)
		last := ns3[len(ns3)-1]
		var sum float64
		for _, p := range []string{web.Name, "db", "cache"} {
			pts := h.Series(metrics.KindPod, ns+"/"+p)
			sum += pts[len(pts)-1].Memory
		}
		if d := last.Memory - sum; d > 1<<20 || d < -(1<<20) {
			t.Errorf("namespace memory %f is not the sum of its pods %f", last.Memory, sum)
		}
	})

	t.Run("usage in the kubelet's names on the API server's /metrics", func(t *testing.T) {
		var body string
		eventually(t, 10*time.Second, "usage series", func() error {
			b, err := rest.Get().AbsPath("/metrics").DoRaw(ctx)
			if err != nil {
				return err
			}
			body = string(b)
			for _, want := range []string{
				"# TYPE node_cpu_usage_seconds_total counter",
				`node_memory_working_set_bytes{node="` + nodes[0] + `"}`,
				`pod_cpu_usage_seconds_total{namespace="` + ns + `",node="` + nodes[1] + `",pod="db"}`,
				`container_memory_working_set_bytes{container="sidecar",namespace="` + ns + `",node="` + web.Spec.NodeName + `",pod="` + web.Name + `"}`,
			} {
				if !strings.Contains(body, want) {
					return fmt.Errorf("no %s", want)
				}
			}
			return nil
		})
		if !strings.Contains(body, "skiff_metrics_scrape_round_duration_seconds") {
			t.Error("the add-on's own metrics are gone")
		}
	})

	t.Run("remote write", func(t *testing.T) {
		// The writer's encoding is checked in the package's tests; here,
		// that skiff server's flags reach it.
		eventually(t, 15*time.Second, "a write with the pods' series", func() error {
			e.mu.Lock()
			defer e.mu.Unlock()
			for _, w := range e.written {
				if bytes.Contains(w, []byte("pod_cpu_usage_seconds_total")) && bytes.Contains(w, []byte(web.Name)) {
					return nil
				}
			}
			return fmt.Errorf("%d writes, none with %s", len(e.written), web.Name)
		})
	})

	t.Run("stale node keeps its last values", func(t *testing.T) {
		down := nodes[2]
		before, ok := mc.NodeMetrics(down)
		if !ok {
			t.Fatal("no metrics before")
		}
		e.setDown(down, true)
		eventually(t, 10*time.Second, "node marked stale", func() error {
			m, ok := mc.NodeMetrics(down)
			if !ok || m.Annotations[metrics.StaleAnnotation] != "true" {
				return fmt.Errorf("not stale yet: %v", ok)
			}
			if m.Usage.Cpu().IsZero() || m.Usage.Memory().IsZero() || m.Timestamp.Before(&before.Timestamp) {
				return fmt.Errorf("stale node shown as zero: %+v", m.Usage)
			}
			return nil
		})
		if u := mc.Latest().Nodes[down]; u == nil || !u.Stale || u.LastError == "" {
			t.Errorf("Go API: %+v", u)
		}
		// After MaxStale (2 s here) the node has no metrics: absent, not zero.
		eventually(t, 15*time.Second, "stale node dropped", func() error {
			if _, ok := mc.NodeMetrics(down); ok {
				return fmt.Errorf("still served")
			}
			return nil
		})
		n := len(mc.History().Series(metrics.KindNode, down))
		e.setDown(down, false)
		eventually(t, 10*time.Second, "node back", func() error {
			m, ok := mc.NodeMetrics(down)
			if !ok || m.Annotations[metrics.StaleAnnotation] != "" {
				return fmt.Errorf("not back")
			}
			return nil
		})
		// The outage is a gap in the history, not zeros.
		for _, p := range mc.History().Series(metrics.KindNode, down) {
			if p.CPU == 0 || p.Memory == 0 {
				t.Fatalf("zero point in history: %+v", p)
			}
		}
		if m := len(mc.History().Series(metrics.KindNode, down)); m <= n {
			t.Errorf("history did not resume: %d then %d", n, m)
		}
	})
}

func names(items []metricsv1beta1.PodMetrics) []string {
	var out []string
	for _, i := range items {
		out = append(out, i.Name)
	}
	return out
}
