package backend_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/addons/federation/apis/v1alpha1"
	"github.com/skiffhq/skiff/backend"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// callOn is call with the member cluster header.
func (u *user) callOn(cluster, method, path, body string) (int, string) {
	u.e.t.Helper()
	hdr := map[string]string{"Cookie": u.cookie.Name + "=" + u.cookie.Value, "Origin": u.e.web.URL, "X-CSRF-Token": u.csrf, backend.ClusterHeader: cluster}
	resp := u.e.do(method, path, strings.NewReader(body), hdr)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMemberClusterContext runs a host with the federation add-on and a
// real member server: the dashboard lists MemberClusters as any kind,
// switches an allowed user's context to the member (objects, tables and
// actions then are the member's), refuses a user who may not read the
// member's credentials Secret with a 403 naming it, reports an
// unreachable member, and revokes a member table when the user loses
// access to the Secret.
func TestMemberClusterContext(t *testing.T) {
	ctx := context.Background()
	tokens := filepath.Join(t.TempDir(), "tokens.csv")
	csv := adminToken + ",alice,1,system:masters\n" + viewerToken + ",viewer,2\n" + devToken + ",dev,3\n"
	if err := os.WriteFile(tokens, []byte(csv), 0o600); err != nil {
		t.Fatal(err)
	}
	host := testserver.Start(t, func(c *server.Config) {
		c.TokenAuthFile = tokens
		c.Enable = []string{"federation"}
	})
	member := testserver.Start(t)
	if _, err := member.Client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "only-on-member"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const credNS = "federation-system"
	if _, err := host.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: credNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kc, err := os.ReadFile(member.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	// "gone" points at a loopback port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	for name, endpoint := range map[string]string{"m1": member.URL(), "gone": "https://" + closed} {
		if _, err := host.Client.CoreV1().Secrets(credNS).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name + "-credentials"},
			Data: map[string][]byte{"kubeconfig": kc}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		mc := v1alpha1.MemberCluster{
			TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: v1alpha1.KindMemberCluster},
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       v1alpha1.MemberClusterSpec{APIEndpoint: endpoint, SecretRef: &v1alpha1.SecretReference{Namespace: credNS, Name: name + "-credentials"}},
		}
		u, err := v1alpha1.ToUnstructured(mc)
		if err != nil {
			t.Fatal(err)
		}
		unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
		unstructured.RemoveNestedField(u.Object, "status")
		// The add-on creates its CRDs at start.
		deadline := time.Now().Add(60 * time.Second)
		for {
			_, err = host.Dynamic.Resource(v1alpha1.MemberClusterGVR).Create(ctx, u, metav1.CreateOptions{})
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("create member %s: %v", name, err)
		}
	}
	// viewer and dev may read MemberClusters; only dev may read m1's
	// Secret (until the binding goes).
	mustCreate := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err = host.Client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "members-read"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"*"}, Verbs: []string{"get", "list", "watch"}}}}, metav1.CreateOptions{})
	mustCreate(err)
	_, err = host.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "members-read"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "members-read"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "viewer"}, {Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "dev"}}}, metav1.CreateOptions{})
	mustCreate(err)
	_, err = host.Client.RbacV1().Roles(credNS).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "m1-credentials"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"m1-credentials"}, Verbs: []string{"get"}}}}, metav1.CreateOptions{})
	mustCreate(err)
	_, err = host.Client.RbacV1().RoleBindings(credNS).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "dev-m1"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "m1-credentials"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "dev"}}}, metav1.CreateOptions{})
	mustCreate(err)

	e := backendOn(t, host)
	admin, viewer, dev := e.login(adminToken), e.login(viewerToken), e.login(devToken)

	// MemberClusters are a kind like any other: a live table with the
	// add-on's health status.
	c := admin.ws(t)
	c.send(map[string]any{"type": "subscribe", "id": "mc", "group": v1alpha1.GroupVersion.Group, "version": v1alpha1.GroupVersion.Version, "resource": v1alpha1.MemberClusterGVR.Resource})
	deadline := time.Now().Add(60 * time.Second)
	ready := map[string]string{}
	for ready["m1"] != "True" || ready["gone"] != "False" {
		if time.Now().After(deadline) {
			t.Fatalf("MemberCluster health not streamed: %v", ready)
		}
		m := c.next("member clusters", func(m msg) bool { return m.ID == "mc" })
		if m.Type != "page" {
			t.Fatalf("member clusters subscription: %+v", m)
		}
		for _, o := range m.Upsert {
			conds, _, _ := unstructured.NestedSlice(o, "status", "conditions")
			for _, cd := range conds {
				if cm, _ := cd.(map[string]any); cm["type"] == v1alpha1.ConditionReady {
					ready[o["metadata"].(map[string]any)["name"].(string)] = cm["status"].(string)
				}
			}
		}
	}

	// Switching: the admin's context moves to m1.
	// The answer names the member and its version, nothing of the
	// credentials.
	if code, body := admin.call("POST", "/api/cluster", `{"cluster":"m1"}`); code != 200 || !strings.HasPrefix(body, `{"cluster":"m1","version":"v1.`) || strings.Count(body, ",") != 1 {
		t.Fatalf("switch to m1: %d %s", code, body)
	}
	objPath := "/api/object?version=v1&resource=configmaps&namespace=default&name=only-on-member"
	if code, body := admin.callOn("m1", "GET", objPath, ""); code != 200 || !strings.Contains(body, "only-on-member") {
		t.Fatalf("member object: %d %s", code, body)
	}
	if code, _ := admin.call("GET", objPath, ""); code != 404 {
		t.Fatalf("the host has no such ConfigMap, got %d", code)
	}
	// Actions land on the member.
	if code, body := admin.callOn("m1", "POST", "/api/apply?namespace=default", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-dashboard\ndata:\n  a: b\n"); code != 200 {
		t.Fatalf("apply on member: %d %s", code, body)
	}
	if _, err := member.Client.CoreV1().ConfigMaps("default").Get(ctx, "from-dashboard", metav1.GetOptions{}); err != nil {
		t.Fatalf("the member lacks the applied ConfigMap: %v", err)
	}
	if _, err := host.Client.CoreV1().ConfigMaps("default").Get(ctx, "from-dashboard", metav1.GetOptions{}); err == nil {
		t.Fatal("the apply for the member landed on the host")
	}
	// Discovery is the member's: it serves no federation kinds.
	if code, body := admin.callOn("m1", "GET", "/api/discovery", ""); code != 200 || strings.Contains(body, "memberclusters") || !strings.Contains(body, `"configmaps"`) {
		t.Fatalf("member discovery: %d %.300s", code, body)
	}
	// Tables: a member subscription streams the member's objects.
	c.send(map[string]any{"type": "subscribe", "id": "cm", "version": "v1", "resource": "configmaps", "namespace": "default", "cluster": "m1"})
	m := c.next("member configmaps", func(m msg) bool { return m.ID == "cm" })
	if m.Type != "page" || !contains(m.Order, "default/only-on-member") {
		t.Fatalf("member configmaps page: %+v", m)
	}
	// Log search is the host's only.
	if code, body := admin.callOn("m1", "GET", "/api/logsearch?q=x", ""); code != 400 || !strings.Contains(body, "host cluster only") {
		t.Fatalf("log search on a member: %d %s", code, body)
	}

	// An unreachable member: a clear error, and back to the host.
	if code, body := admin.call("POST", "/api/cluster", `{"cluster":"gone"}`); code != http.StatusBadGateway || !strings.Contains(body, `member cluster \"gone\" is unreachable`) {
		t.Fatalf("switch to an unreachable member: %d %s", code, body)
	}
	if code, body := admin.call("POST", "/api/cluster", `{"cluster":""}`); code != 200 {
		t.Fatalf("switch back to the host: %d %s", code, body)
	}
	if code, body := admin.call("POST", "/api/cluster", `{"cluster":"nope"}`); code != 404 || !strings.Contains(body, "not found") {
		t.Fatalf("switch to a missing member: %d %s", code, body)
	}

	// viewer may read MemberClusters but not the Secret: refused with a
	// 403 naming it, for switching, objects and tables alike.
	want := `viewer cannot get secret federation-system/m1-credentials`
	if code, body := viewer.call("POST", "/api/cluster", `{"cluster":"m1"}`); code != 403 || !strings.Contains(body, want) {
		t.Fatalf("viewer switch: %d %s", code, body)
	}
	if code, body := viewer.callOn("m1", "GET", objPath, ""); code != 403 || !strings.Contains(body, want) {
		t.Fatalf("viewer member object: %d %s", code, body)
	}
	vc := viewer.ws(t)
	vc.send(map[string]any{"type": "subscribe", "id": "cm", "version": "v1", "resource": "configmaps", "namespace": "default", "cluster": "m1"})
	if m := vc.next("viewer member table", func(m msg) bool { return m.ID == "cm" }); m.Type != "error" || m.Code != 403 || !strings.Contains(m.Message, want) {
		t.Fatalf("viewer member table: %+v", m)
	}

	// dev may read m1's Secret: its member table streams until the
	// RoleBinding goes, then it is revoked.
	if code, body := dev.call("POST", "/api/cluster", `{"cluster":"m1"}`); code != 200 {
		t.Fatalf("dev switch: %d %s", code, body)
	}
	if code, body := dev.call("POST", "/api/cluster", `{"cluster":"gone"}`); code != 403 || !strings.Contains(body, "dev cannot get secret federation-system/gone-credentials") {
		t.Fatalf("dev switch to gone: %d %s", code, body)
	}
	dc := dev.ws(t)
	dc.send(map[string]any{"type": "subscribe", "id": "cm", "version": "v1", "resource": "configmaps", "namespace": "default", "cluster": "m1"})
	if m := dc.next("dev member table", func(m msg) bool { return m.ID == "cm" }); m.Type != "page" || !contains(m.Order, "default/only-on-member") {
		t.Fatalf("dev member table: %+v", m)
	}
	if err := host.Client.RbacV1().RoleBindings(credNS).Delete(ctx, "dev-m1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	m = dc.next("dev member table revoked", func(m msg) bool { return m.ID == "cm" && m.Type != "page" })
	if m.Type != "revoked" || !strings.Contains(m.Message, "dev cannot get secret federation-system/m1-credentials") {
		t.Fatalf("dev member table after losing the Secret: %+v", m)
	}
	if code, body := dev.callOn("m1", "GET", objPath, ""); code != 403 {
		t.Fatalf("dev member object after losing the Secret: %d %s", code, body)
	}
}
