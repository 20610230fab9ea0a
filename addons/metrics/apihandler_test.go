package metrics

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

// apiTestCollector has nodes n1 (zone=a) and n2 (zone=b) and pods
// apps/web (app=web, on n1), apps/db (app=db, on n2) and other/web
// (app=web, on n2), after two scrape rounds.
func apiTestCollector(t *testing.T) *Collector {
	t.Helper()
	agents := newFakeAgents(t)
	nodes := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for n, zone := range map[string]string{"n1": "a", "n2": "b"} {
		if err := nodes.Add(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{"zone": zone}}}); err != nil {
			t.Fatal(err)
		}
	}
	c := testCollector(t, agents.scraper(), nodes, nil)
	pods := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, p := range [][3]string{{"apps", "web", "web"}, {"apps", "db", "db"}, {"other", "web", "web"}} {
		if err := pods.Add(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: p[0], Name: p[1], UID: types.UID("uid-" + p[1]), Labels: map[string]string{"app": p[2]}}}); err != nil {
			t.Fatal(err)
		}
	}
	c.pods = corelisters.NewPodLister(pods)
	ctx := context.Background()
	t0 := time.Now().Add(-time.Minute)
	for i, at := range []time.Time{t0, t0.Add(15 * time.Second)} {
		cpu := float64(10 * (i + 1))
		agents.set("n1", summary("n1", at, 100*cpu, 1<<30, podStats("apps", "web", at, cpu, 64<<20)))
		agents.set("n2", summary("n2", at, 100*cpu, 2<<30, podStats("apps", "db", at, cpu, 32<<20), podStats("other", "web", at, cpu, 16<<20)))
		c.round(ctx)
	}
	return c
}

func get(t *testing.T, h http.Handler, method, target string, hdr ...string) (*httptest.ResponseRecorder, []byte) {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w, w.Body.Bytes()
}

func TestAPIHandler(t *testing.T) {
	c := apiTestCollector(t)
	h := c.APIHandler()

	t.Run("health", func(t *testing.T) {
		for _, p := range []string{"/healthz", "/livez", "/readyz"} {
			if w, b := get(t, h, "GET", p); w.Code != 200 || string(b) != "ok" {
				t.Errorf("%s: %d %s", p, w.Code, b)
			}
		}
		c.ready.Store(false)
		if w, _ := get(t, h, "GET", "/readyz"); w.Code != http.StatusServiceUnavailable {
			t.Errorf("readyz before a round: %d", w.Code)
		}
		c.ready.Store(true)
	})

	t.Run("discovery", func(t *testing.T) {
		var gl metav1.APIGroupList
		w, b := get(t, h, "GET", "/apis")
		if err := json.Unmarshal(b, &gl); err != nil || w.Code != 200 || gl.Kind != "APIGroupList" || len(gl.Groups) != 1 ||
			gl.Groups[0].Name != "metrics.k8s.io" || gl.Groups[0].PreferredVersion.GroupVersion != "metrics.k8s.io/v1beta1" {
			t.Errorf("/apis: %d %s", w.Code, b)
		}
		var g metav1.APIGroup
		w, b = get(t, h, "GET", "/apis/metrics.k8s.io")
		if err := json.Unmarshal(b, &g); err != nil || w.Code != 200 || g.Kind != "APIGroup" || g.Versions[0].Version != "v1beta1" {
			t.Errorf("group: %d %s", w.Code, b)
		}
		var rl metav1.APIResourceList
		w, b = get(t, h, "GET", "/apis/metrics.k8s.io/v1beta1")
		if err := json.Unmarshal(b, &rl); err != nil || w.Code != 200 || rl.Kind != "APIResourceList" || rl.GroupVersion != "metrics.k8s.io/v1beta1" || len(rl.APIResources) != 2 {
			t.Fatalf("version: %d %s", w.Code, b)
		}
		for _, r := range rl.APIResources {
			want := map[string]string{"nodes": "NodeMetrics false", "pods": "PodMetrics true"}[r.Name]
			if got := r.Kind + " " + map[bool]string{true: "true", false: "false"}[r.Namespaced]; got != want || strings.Join(r.Verbs, ",") != "get,list" {
				t.Errorf("resource %+v", r)
			}
		}
		var agg apidiscoveryv2.APIGroupDiscoveryList
		w, b = get(t, h, "GET", "/apis", "Accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json")
		if err := json.Unmarshal(b, &agg); err != nil || w.Header().Get("Content-Type") != aggregatedDiscoveryType || len(agg.Items) != 1 ||
			len(agg.Items[0].Versions) != 1 || len(agg.Items[0].Versions[0].Resources) != 2 {
			t.Fatalf("aggregated: %d %s %s", w.Code, w.Header().Get("Content-Type"), b)
		}
		if r := agg.Items[0].Versions[0].Resources[1]; r.Resource != "pods" || r.Scope != apidiscoveryv2.ScopeNamespace || r.ResponseKind.Kind != "PodMetrics" {
			t.Errorf("aggregated pods: %+v", r)
		}
	})

	nodeList := func(t *testing.T, target string) []string {
		t.Helper()
		var l metricsv1beta1.NodeMetricsList
		w, b := get(t, h, "GET", target)
		if err := json.Unmarshal(b, &l); err != nil || w.Code != 200 || l.Kind != "NodeMetricsList" || l.APIVersion != "metrics.k8s.io/v1beta1" {
			t.Fatalf("%s: %d %s", target, w.Code, b)
		}
		var out []string
		for _, m := range l.Items {
			if m.Usage.Cpu().IsZero() || m.Usage.Memory().IsZero() {
				t.Errorf("node %s without usage: %v", m.Name, m.Usage)
			}
			out = append(out, m.Name)
		}
		return out
	}
	podList := func(t *testing.T, target string) []string {
		t.Helper()
		var l metricsv1beta1.PodMetricsList
		w, b := get(t, h, "GET", target)
		if err := json.Unmarshal(b, &l); err != nil || w.Code != 200 || l.Kind != "PodMetricsList" {
			t.Fatalf("%s: %d %s", target, w.Code, b)
		}
		out := []string{}
		for _, m := range l.Items {
			out = append(out, m.Namespace+"/"+m.Name)
		}
		return out
	}

	t.Run("nodes", func(t *testing.T) {
		if got := strings.Join(nodeList(t, "/apis/metrics.k8s.io/v1beta1/nodes"), ","); got != "n1,n2" {
			t.Errorf("nodes: %s", got)
		}
		if got := strings.Join(nodeList(t, "/apis/metrics.k8s.io/v1beta1/nodes?labelSelector=zone%3Db"), ","); got != "n2" {
			t.Errorf("zone=b: %s", got)
		}
		var m metricsv1beta1.NodeMetrics
		w, b := get(t, h, "GET", "/apis/metrics.k8s.io/v1beta1/nodes/n2")
		want, _ := c.NodeMetrics("n2")
		if err := json.Unmarshal(b, &m); err != nil || w.Code != 200 || m.Kind != "NodeMetrics" || m.APIVersion != "metrics.k8s.io/v1beta1" ||
			m.Name != "n2" || m.Labels["zone"] != "b" || !m.Usage.Memory().Equal(*want.Usage.Memory()) || !m.Usage.Cpu().Equal(*want.Usage.Cpu()) {
			t.Errorf("n2: %d %s", w.Code, b)
		}
	})

	t.Run("pods", func(t *testing.T) {
		for target, want := range map[string]string{
			"/apis/metrics.k8s.io/v1beta1/pods":                                             "apps/db,apps/web,other/web",
			"/apis/metrics.k8s.io/v1beta1/pods?labelSelector=app%3Dweb":                     "apps/web,other/web",
			"/apis/metrics.k8s.io/v1beta1/namespaces/apps/pods":                             "apps/db,apps/web",
			"/apis/metrics.k8s.io/v1beta1/namespaces/apps/pods?labelSelector=app+in+(web)":  "apps/web",
			"/apis/metrics.k8s.io/v1beta1/namespaces/apps/pods?labelSelector=app%21%3Dweb":  "apps/db",
			"/apis/metrics.k8s.io/v1beta1/namespaces/none/pods":                             "",
			"/apis/metrics.k8s.io/v1beta1/namespaces/other/pods?labelSelector=app%3Dnobody": "",
		} {
			if got := strings.Join(podList(t, target), ","); got != want {
				t.Errorf("%s: %s, want %s", target, got, want)
			}
		}
		var m metricsv1beta1.PodMetrics
		w, b := get(t, h, "GET", "/apis/metrics.k8s.io/v1beta1/namespaces/apps/pods/web")
		if err := json.Unmarshal(b, &m); err != nil || w.Code != 200 || m.Kind != "PodMetrics" || m.Namespace != "apps" || len(m.Containers) != 1 ||
			m.Containers[0].Name != "c" || m.Containers[0].Usage.Memory().Value() != 64<<20 {
			t.Errorf("apps/web: %d %s", w.Code, b)
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			method, target string
			code           int
			reason         metav1.StatusReason
		}{
			{"GET", "/apis/metrics.k8s.io/v1beta1/nodes/nope", 404, metav1.StatusReasonNotFound},
			{"GET", "/apis/metrics.k8s.io/v1beta1/namespaces/apps/pods/nope", 404, metav1.StatusReasonNotFound},
			{"GET", "/apis/metrics.k8s.io/v1beta1/pods/web", 404, metav1.StatusReasonNotFound},
			{"GET", "/apis/metrics.k8s.io/v1beta1/namespaces/apps/nodes", 404, metav1.StatusReasonNotFound},
			{"GET", "/apis/metrics.k8s.io/v1beta1/nodes/n1/status", 404, metav1.StatusReasonNotFound},
			{"GET", "/apis/metrics.k8s.io/v1beta1/deployments", 404, metav1.StatusReasonNotFound},
			{"GET", "/apis/metrics.k8s.io/v1", 404, metav1.StatusReasonNotFound},
			{"GET", "/apis/apps/v1/deployments", 404, metav1.StatusReasonNotFound},
			{"GET", "/api/v1/nodes", 404, metav1.StatusReasonNotFound},
			{"GET", "/", 404, metav1.StatusReasonNotFound},
			{"DELETE", "/apis/metrics.k8s.io/v1beta1/nodes/n1", 405, metav1.StatusReasonMethodNotAllowed},
			{"POST", "/apis/metrics.k8s.io/v1beta1/namespaces/apps/pods", 405, metav1.StatusReasonMethodNotAllowed},
			{"PATCH", "/apis/metrics.k8s.io/v1beta1/nodes/n1", 405, metav1.StatusReasonMethodNotAllowed},
			{"POST", "/apis", 405, metav1.StatusReasonMethodNotAllowed},
			{"GET", "/apis/metrics.k8s.io/v1beta1/nodes?watch=true", 405, metav1.StatusReasonMethodNotAllowed},
			{"GET", "/apis/metrics.k8s.io/v1beta1/nodes?labelSelector=a%20in%20(", 400, metav1.StatusReasonBadRequest},
		} {
			w, b := get(t, h, tc.method, tc.target)
			var st metav1.Status
			if err := json.Unmarshal(b, &st); err != nil || w.Code != tc.code || st.Kind != "Status" || st.Code != int32(tc.code) || st.Reason != tc.reason {
				t.Errorf("%s %s: %d %s, want %d %s", tc.method, tc.target, w.Code, b, tc.code, tc.reason)
			}
		}
		_, b := get(t, h, "GET", "/apis/metrics.k8s.io/v1beta1/nodes/nope")
		if !strings.Contains(string(b), `nodes.metrics.k8s.io \"nope\" not found`) {
			t.Errorf("not found message: %s", b)
		}
	})
}
