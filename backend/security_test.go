package backend_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/skiffhq/skiff/backend"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
)

// grant gives user a Role in ns with verbs on core resources, bound by a
// RoleBinding named name.
func grant(t *testing.T, e *env, ns, name, user string, verbs []string, resources ...string) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.ts.Client.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: resources, Verbs: verbs}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ts.Client.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// createPod creates a pod, retrying while the namespace's default
// service account does not exist yet.
func createPod(t *testing.T, e *env, ns, name string) {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := e.ts.Client.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{})
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("create pod %s: %v", name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// revokedCM is the revocation's message: which of the two reviews (list,
// watch) is refused first depends on when the API server's authorizer
// saw the deletion.
var revokedCM = regexp.MustCompile(`^access revoked: dev cannot (list|watch) configmaps in namespace team$`)

// TestRevokedSubscriptionStops: deleting the RoleBinding that allowed a
// subscription ends it with a "revoked" message (the RBAC watch, not the
// periodic check, which is an hour here), after which it sends nothing
// even when its objects change; a subscription still allowed goes on.
func TestRevokedSubscriptionStops(t *testing.T) {
	e := start(t, func(o *backend.Options) { o.ReauthInterval = time.Hour })
	grant(t, e, "team", "dev-configmaps", "dev", []string{"list", "watch"}, "configmaps")
	grant(t, e, "team", "dev-pods", "dev", []string{"list", "watch"}, "pods")
	createCM(t, e, "team", "before", nil)
	createPod(t, e, "team", "p1")

	c := e.login(devToken).ws(t)
	c.send(sub("cm", "configmaps", "team", nil))
	c.send(sub("pods", "pods", "team", nil))
	seen := map[string]bool{}
	c.next("both pages", func(m msg) bool {
		if m.Type == "error" {
			t.Fatalf("subscription refused: %+v", m)
		}
		seen[m.ID] = seen[m.ID] || (m.Type == "page" && (contains(m.Order, "team/before") || contains(m.Order, "team/p1")))
		return seen["cm"] && seen["pods"]
	})
	// Live before the revocation: a change reaches the browser.
	createCM(t, e, "team", "live", nil)
	c.next("configmap delta", func(m msg) bool { return m.Type == "page" && m.ID == "cm" && contains(upsertNames(m), "live") })

	// The RBAC informers' initial sync triggered a pass and its
	// confirmation 2 s later; let them finish, so that the revocation
	// below can only come from the deletion's watch event.
	time.Sleep(3 * time.Second)
	ctx := context.Background()
	revokedAt := time.Now()
	if err := e.ts.Client.RbacV1().RoleBindings("team").Delete(ctx, "dev-configmaps", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	m := c.next("revocation", func(m msg) bool {
		if m.Type == "revoked" && m.ID == "pods" {
			t.Fatalf("the still-allowed pods subscription was revoked: %+v", m)
		}
		return m.Type == "revoked" || m.Type == "error"
	})
	if m.Type != "revoked" || m.ID != "cm" || m.Code != http.StatusForbidden || m.Reason != "Forbidden" ||
		!revokedCM.MatchString(m.Message) {
		t.Fatalf("revocation message: %+v", m)
	}
	t.Logf("revoked %v after the RoleBinding was deleted", time.Since(revokedAt).Round(time.Millisecond))

	// The configmap changes; the pods subscription still works and the
	// revoked one sends nothing. The pod is created after the configmap
	// change and both kinds' informers deliver in order of arrival, so a
	// configmap page would come before the pod's; a ping after a pause
	// bounds the wait for stragglers.
	createCM(t, e, "team", "after", nil)
	if err := e.ts.Client.CoreV1().ConfigMaps("team").Delete(ctx, "before", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	createPod(t, e, "team", "p2")
	check := func(m msg) {
		if m.ID == "cm" {
			t.Fatalf("the revoked subscription sent %+v", m)
		}
	}
	c.next("pods delta", func(m msg) bool {
		check(m)
		return m.Type == "page" && m.ID == "pods" && contains(upsertNames(m), "p2")
	})
	time.Sleep(time.Second)
	c.send(map[string]string{"type": "ping"})
	c.next("pong", func(m msg) bool { check(m); return m.Type == "pong" })
}

// TestSessionRevokedWhenTokenStopsAuthenticating: the periodic check asks
// the API server who the session's token belongs to; once the service
// account behind the token is deleted the answer is 401, and the session
// ends: its socket gets a "revoked" message (401, no id) and closes, and
// the cookie no longer works.
func TestSessionRevokedWhenTokenStopsAuthenticating(t *testing.T) {
	e := start(t, func(o *backend.Options) { o.ReauthInterval = 300 * time.Millisecond })
	ctx := context.Background()
	sa, err := e.ts.Client.CoreV1().ServiceAccounts("team").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "robot"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ts.Client.RbacV1().RoleBindings("team").Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "robot-view"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "team", Name: sa.Name}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := e.ts.Client.CoreV1().ServiceAccounts("team").CreateToken(ctx, sa.Name, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	u := e.login(tr.Status.Token)
	createCM(t, e, "team", "cm", nil)
	c := u.ws(t)
	c.send(sub("cm", "configmaps", "team", nil))
	c.next("page", func(m msg) bool {
		if m.Type == "error" {
			t.Fatalf("subscription refused: %+v", m)
		}
		return m.Type == "page"
	})
	// Several periodic checks pass while the token is good.
	time.Sleep(time.Second)
	if code, body := u.call("GET", "/api/session", ""); code != 200 {
		t.Fatalf("session with a good token: %d %s", code, body)
	}

	if err := e.ts.Client.CoreV1().ServiceAccounts("team").Delete(ctx, sa.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	m := c.next("session revocation", func(m msg) bool { return m.Type == "revoked" || m.Type == "error" })
	if m.Type != "revoked" || m.ID != "" || m.Code != http.StatusUnauthorized || m.Reason != "SessionRevoked" || !strings.Contains(m.Message, "log in again") {
		t.Fatalf("session revocation: %+v", m)
	}
	// The socket closes after the message.
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		var m msg
		err := c.conn.ReadJSON(&m)
		if err == nil {
			if m.Type == "page" {
				t.Fatalf("a page after the session was revoked: %+v", m)
			}
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != 4401 {
			t.Fatalf("socket after the revocation: %v, want close 4401", err)
		}
		break
	}
	if code, _ := u.call("GET", "/api/session", ""); code != http.StatusUnauthorized {
		t.Fatalf("session after the revocation: %d, want 401", code)
	}
}

var secretsGVR = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}

// TestSecretsCacheHoldsOnlyMetadata: the backend's shared cache of
// Secrets holds metadata only (not data, not kubectl's last-applied copy),
// so listing Secrets through the dashboard never puts a value in the
// backend's memory or on the socket; a Secret's data is read with the
// user's own token, so a user without get secrets cannot read it through
// the dashboard and one with it can.
func TestSecretsCacheHoldsOnlyMetadata(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	value := "planted-" + time.Now().Format("150405.000000")
	b64 := base64.StdEncoding.EncodeToString([]byte(value))
	applied := `{"apiVersion":"v1","data":{"token":"` + b64 + `"},"kind":"Secret","metadata":{"name":"creds","namespace":"team"}}`
	if _, err := e.ts.Client.CoreV1().Secrets("team").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "creds", Labels: map[string]string{"app": "web"},
			Annotations: map[string]string{"kubectl.kubernetes.io/last-applied-configuration": applied, "note": "kept"}},
		Data: map[string][]byte{"token": []byte(value)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	grant(t, e, "team", "dev-secrets", "dev", []string{"get", "list", "watch"}, "secrets")

	leaks := func(what string, v any) {
		t.Helper()
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if s := string(b); strings.Contains(s, b64) || strings.Contains(s, value) {
			t.Fatalf("%s holds the secret's value: %s", what, s)
		}
	}
	checkCache := func(wantRV string) {
		t.Helper()
		objs := backend.CachedObjects(e.be, secretsGVR)
		found := false
		for _, o := range objs {
			u, ok := o.(*unstructured.Unstructured)
			if !ok {
				t.Fatalf("cached secret is a %T", o)
			}
			for k := range u.Object {
				if k != "apiVersion" && k != "kind" && k != "metadata" {
					t.Fatalf("cached secret %s has %q: %v", u.GetName(), k, u.Object)
				}
			}
			leaks("the cache", u.Object)
			if u.GetNamespace() == "team" && u.GetName() == "creds" {
				found = true
				if u.GetKind() != "Secret" || u.GetAPIVersion() != "v1" || u.GetLabels()["app"] != "web" || u.GetAnnotations()["note"] != "kept" {
					t.Fatalf("cached secret row: %v", u.Object)
				}
				if wantRV != "" && u.GetResourceVersion() != wantRV {
					t.Fatalf("cached secret resourceVersion %s, want %s", u.GetResourceVersion(), wantRV)
				}
			}
		}
		if !found {
			t.Fatalf("team/creds is not in the cache (%d objects)", len(objs))
		}
	}

	// Listing through the dashboard (as admin, and as dev who may list).
	for _, tok := range []string{adminToken, devToken} {
		c := e.login(tok).ws(t)
		c.send(sub("s", "secrets", "team", nil))
		m := c.next("secrets page", func(m msg) bool { return m.ID == "s" })
		if m.Type != "page" || !contains(m.Order, "team/creds") {
			t.Fatalf("secrets page: %+v", m)
		}
		leaks("the secrets page", m)
	}
	checkCache("")

	// A change arrives through the watch, still without data.
	sec, err := e.ts.Client.CoreV1().Secrets("team").Get(ctx, "creds", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sec.Data["more"] = []byte(value + "-2")
	sec, err = e.ts.Client.CoreV1().Secrets("team").Update(ctx, sec, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		objs := backend.CachedObjects(e.be, secretsGVR)
		seen := false
		for _, o := range objs {
			if u := o.(*unstructured.Unstructured); u.GetName() == "creds" && u.GetResourceVersion() == sec.ResourceVersion {
				seen = true
			}
		}
		if seen {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the cache never saw the secret's update")
		}
		time.Sleep(100 * time.Millisecond)
	}
	checkCache(sec.ResourceVersion)

	// Reading one Secret runs as the user.
	ref := "/api/object?version=v1&resource=secrets&namespace=team&name=creds"
	viewer := e.login(viewerToken)
	if code, body := viewer.call("GET", ref, ""); code != http.StatusForbidden || strings.Contains(body, b64) {
		t.Fatalf("viewer (no get secrets) read a secret: %d %s", code, body)
	}
	if code, body := viewer.call("GET", ref+"&format=yaml", ""); code != http.StatusForbidden || strings.Contains(body, b64) {
		t.Fatalf("viewer (no get secrets) read a secret's YAML: %d %s", code, body)
	}
	dev := e.login(devToken)
	if code, body := dev.call("GET", ref, ""); code != 200 || !strings.Contains(body, b64) {
		t.Fatalf("dev (get secrets) reading the secret: %d %s", code, body)
	}
}
