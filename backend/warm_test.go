package backend_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/backend"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

var (
	podsGVR       = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	namespacesGVR = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
)

// cachedNames waits until the shared cache of gvr holds every name in
// want (namespace/name), without any subscription, and returns its objects.
func cachedNames(t *testing.T, e *env, gvr schema.GroupVersionResource, want ...string) map[string]*unstructured.Unstructured {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := map[string]*unstructured.Unstructured{}
		for _, o := range backend.CachedObjects(e.be, gvr) {
			if u, ok := o.(*unstructured.Unstructured); ok {
				got[u.GetNamespace()+"/"+u.GetName()] = u
			}
		}
		missing := ""
		for _, w := range want {
			if got[w] == nil {
				missing = w
			}
		}
		if missing == "" {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s not in the shared cache after 15 s (%d objects)", gvr.Resource, missing, len(got))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWarmCachesLoadBeforeAnySubscription: the kinds of Options.Warm are
// listed and watched when the backend is built, before any login or
// subscription; pods are kept as rows (no managed fields or last-applied
// copy, the tables' fields kept); subscriptions to a warm kind are still
// authorized as their user, and see changes through the warm watch.
func TestWarmCachesLoadBeforeAnySubscription(t *testing.T) {
	e := start(t, func(o *backend.Options) { o.Warm = []schema.GroupVersionResource{podsGVR, namespacesGVR} })
	ctx := context.Background()
	for _, p := range []struct{ ns, name string }{{"team", "warm-1"}, {"other", "warm-2"}} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: p.ns, Labels: map[string]string{"app": "warm"},
			Annotations: map[string]string{"kubectl.kubernetes.io/last-applied-configuration": `{"copy":"of the pod"}`}},
			Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "c", Image: "busybox",
				Env: []corev1.EnvVar{{Name: "NOT_IN_ROWS", Value: "x"}}}}}}
		if _, err := e.ts.Client.CoreV1().Pods(p.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := e.be.WaitWarm(wctx); err != nil {
		t.Fatal(err)
	}
	got := cachedNames(t, e, podsGVR, "team/warm-1", "other/warm-2")
	cachedNames(t, e, namespacesGVR, "/team", "/other")
	if running, started := e.be.Watches(); running != 2 || started != 2 {
		t.Fatalf("before any subscription: %d watches running, %d started; want the 2 warm kinds", running, started)
	}
	row := got["team/warm-1"]
	if len(row.GetManagedFields()) != 0 {
		t.Errorf("cached pod keeps managed fields: %v", row.GetManagedFields())
	}
	if _, ok := row.GetAnnotations()["kubectl.kubernetes.io/last-applied-configuration"]; ok {
		t.Error("cached pod keeps the last-applied copy")
	}
	if node, _, _ := unstructured.NestedString(row.Object, "spec", "nodeName"); node != "node-a" {
		t.Errorf("cached pod's spec.nodeName %q, want node-a", node)
	}
	if cs, _, _ := unstructured.NestedSlice(row.Object, "spec", "containers"); len(cs) != 1 || cs[0].(map[string]any)["name"] != "c" {
		t.Errorf("cached pod's containers: %v", cs)
	}
	if b, _ := json.Marshal(row.Object); strings.Contains(string(b), "NOT_IN_ROWS") {
		t.Errorf("cached pod keeps the container's env: %s", b)
	}

	// Authorization is the user's as before: the viewer reads team's pods
	// from the warm cache, and nothing else.
	c := e.login(viewerToken).ws(t)
	c.send(sub("p", "pods", "team", nil))
	m := c.next("team pods", func(m msg) bool { return m.ID == "p" })
	if m.Type != "page" || m.Total != 1 || !contains(m.Order, "team/warm-1") || len(m.Upsert) != 1 {
		t.Fatalf("viewer's team pods: %+v", m)
	}
	if phase, _, _ := unstructured.NestedString(m.Upsert[0], "status", "phase"); phase != "Pending" {
		t.Errorf("row's status.phase %q, want Pending", phase)
	}
	if _, ok := m.Upsert[0]["metadata"].(map[string]any)["managedFields"]; ok {
		t.Error("the browser got managed fields")
	}
	for _, ns := range []string{"other", ""} {
		c.send(sub("x", "pods", ns, nil))
		m := c.next("refused pods", func(m msg) bool { return m.ID == "x" })
		if m.Type != "error" || m.Code != 403 || !strings.Contains(m.Message, "viewer cannot list pods") {
			t.Fatalf("viewer's pods in %q: %+v, want 403", ns, m)
		}
	}
	// A change arrives through the warm (protobuf) watch, which the
	// subscription did not restart.
	patch := []byte(`{"metadata":{"labels":{"tier":"new"}}}`)
	if _, err := e.ts.Client.CoreV1().Pods("team").Patch(ctx, "warm-1", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	m = c.next("patched pod", func(m msg) bool {
		return m.ID == "p" && len(m.Upsert) == 1 && m.Upsert[0]["metadata"].(map[string]any)["labels"].(map[string]any)["tier"] == "new"
	})
	// The pods watch was not started again (the first subscription
	// added the re-authorizer's 4 RBAC watches).
	if running, started := e.be.Watches(); running != 6 || started != 6 {
		t.Fatalf("after subscribing: %d watches running, %d started; want 6 and 6", running, started)
	}
}
