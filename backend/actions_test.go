package backend_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestPatchAndEvictAsTheUser: the detail page's actions (rollout restart
// and undo as patches, cordon, a drain's evictions) run as the user: the
// view user gets the API server's 403, the admin's land.
func TestPatchAndEvictAsTheUser(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	if _, err := e.ts.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ts.Client.CoreV1().ConfigMaps("team").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "team"},
		Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	if _, err := e.ts.Client.CoreV1().Pods("team").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	viewer, admin := e.login(viewerToken), e.login(adminToken)

	cordon := `{"version":"v1","resource":"nodes","name":"n1","type":"merge","patch":{"spec":{"unschedulable":true}}}`
	if code, body := viewer.call("POST", "/api/patch", cordon); code != http.StatusForbidden || !strings.Contains(body, "viewer") {
		t.Fatalf("viewer cordon: %d %s", code, body)
	}
	if code, body := admin.call("POST", "/api/patch", cordon); code != 200 {
		t.Fatalf("admin cordon: %d %s", code, body)
	}
	if n, _ := e.ts.Client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{}); !n.Spec.Unschedulable {
		t.Fatal("the node is not unschedulable after the cordon")
	}
	jp := `{"version":"v1","resource":"configmaps","namespace":"team","name":"cm","type":"json","patch":[{"op":"add","path":"/data","value":{"k":"v"}}]}`
	if code, body := admin.call("POST", "/api/patch", jp); code != 200 {
		t.Fatalf("admin JSON patch: %d %s", code, body)
	}
	if cm, _ := e.ts.Client.CoreV1().ConfigMaps("team").Get(ctx, "cm", metav1.GetOptions{}); cm.Data["k"] != "v" {
		t.Fatalf("configmap after the JSON patch: %v", cm.Data)
	}
	for _, bad := range []string{`{"version":"v1","resource":"nodes","name":"n1","type":"strategic","patch":{}}`, `{"version":"v1","resource":"nodes","type":"merge","patch":{}}`, `{`} {
		if code, body := admin.call("POST", "/api/patch", bad); code != http.StatusBadRequest {
			t.Fatalf("bad patch %s: %d %s", bad, code, body)
		}
	}

	evict := `{"namespace":"team","name":"p"}`
	if code, body := viewer.call("POST", "/api/evict", evict); code != http.StatusForbidden || !strings.Contains(body, "viewer") {
		t.Fatalf("viewer evict: %d %s", code, body)
	}
	if code, body := admin.call("POST", "/api/evict", `{"namespace":"team","name":"missing"}`); code != http.StatusNotFound {
		t.Fatalf("evict a missing pod: %d %s", code, body)
	}
	if code, body := admin.call("POST", "/api/evict", evict); code != 200 {
		t.Fatalf("admin evict: %d %s", code, body)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		p, err := e.ts.Client.CoreV1().Pods("team").Get(ctx, "p", metav1.GetOptions{})
		if apierrors.IsNotFound(err) || (err == nil && p.DeletionTimestamp != nil) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pod is neither gone nor terminating after the eviction: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
