package backend_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/skiffhq/skiff/backend"
	"github.com/skiffhq/skiff/controlplane/authz/bootstrap"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

const (
	adminToken  = "admin-token-0123456789"
	viewerToken = "viewer-token-0123456789"
	devToken    = "dev-token-0123456789"
)

type env struct {
	t   *testing.T
	ts  *testserver.Server
	be  *backend.Server
	web *httptest.Server
}

// start runs a real API server with three static-token users (an admin
// in system:masters, "viewer", bound to the view ClusterRole in namespace
// team, and "dev", bound to nothing) and a dashboard backend in front of
// it; opts change the backend's options.
func start(t *testing.T, opts ...func(*backend.Options)) *env {
	t.Helper()
	tokens := filepath.Join(t.TempDir(), "tokens.csv")
	csv := adminToken + ",alice,1,system:masters\n" + viewerToken + ",viewer,2\n" + devToken + ",dev,3\n"
	if err := os.WriteFile(tokens, []byte(csv), 0o600); err != nil {
		t.Fatal(err)
	}
	ts := testserver.Start(t, func(c *server.Config) { c.TokenAuthFile = tokens })
	ctx := context.Background()
	for _, ns := range []string{"team", "other"} {
		if _, err := ts.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ts.Client.RbacV1().RoleBindings("team").Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "viewer-view"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "viewer"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return backendOn(t, ts, opts...)
}

// backendOn starts a dashboard backend in front of ts.
func backendOn(t *testing.T, ts *testserver.Server, opts ...func(*backend.Options)) *env {
	t.Helper()
	cc, err := ts.ComponentConfig(bootstrap.UserDashboard, nil)
	if err != nil {
		t.Fatal(err)
	}
	bo := backend.Options{CacheConfig: cc, Logger: slog.New(slog.DiscardHandler), IdleWatch: time.Hour}
	for _, o := range opts {
		o(&bo)
	}
	be, err := backend.New(bo)
	if err != nil {
		t.Fatal(err)
	}
	web := httptest.NewTLSServer(be.Handler())
	t.Cleanup(func() { web.Close(); be.Close() })
	return &env{t: t, ts: ts, be: be, web: web}
}

// user is a logged-in browser: its session cookie and CSRF token.
type user struct {
	e      *env
	cookie *http.Cookie
	csrf   string
}

func (e *env) do(method, path string, body io.Reader, hdr map[string]string) *http.Response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.web.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.web.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

func (e *env) login(token string) *user {
	e.t.Helper()
	resp := e.do("POST", "/api/login", strings.NewReader(fmt.Sprintf(`{"token":%q}`, token)), map[string]string{"Origin": e.web.URL})
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		e.t.Fatalf("login: %d %s", resp.StatusCode, b)
	}
	var info struct{ User, CSRF string }
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		e.t.Fatal(err)
	}
	for _, c := range resp.Cookies() {
		if c.Name == backend.CookieName {
			return &user{e: e, cookie: c, csrf: info.CSRF}
		}
	}
	e.t.Fatal("login set no session cookie")
	return nil
}

// call sends a request with the session cookie, the dashboard's Origin
// and the CSRF token; it returns the status and body.
func (u *user) call(method, path, body string) (int, string) {
	u.e.t.Helper()
	hdr := map[string]string{"Cookie": u.cookie.Name + "=" + u.cookie.Value, "Origin": u.e.web.URL, "X-CSRF-Token": u.csrf}
	resp := u.e.do(method, path, strings.NewReader(body), hdr)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestLoginSessionAndCSRF(t *testing.T) {
	e := start(t)
	t.Run("bad token", func(t *testing.T) {
		resp := e.do("POST", "/api/login", strings.NewReader(`{"token":"nope"}`), map[string]string{"Origin": e.web.URL})
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
			t.Fatalf("bad token: %d, cookies %v", resp.StatusCode, resp.Cookies())
		}
	})
	t.Run("foreign origin", func(t *testing.T) {
		resp := e.do("POST", "/api/login", strings.NewReader(fmt.Sprintf(`{"token":%q}`, adminToken)), map[string]string{"Origin": "https://evil.example"})
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("login from another origin: %d", resp.StatusCode)
		}
	})
	u := e.login(viewerToken)
	t.Run("cookie", func(t *testing.T) {
		c := u.cookie
		if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Value == viewerToken || len(c.Value) < 40 {
			t.Fatalf("cookie %+v: want a random id, HttpOnly, Secure, SameSite=Strict", c)
		}
	})
	t.Run("session", func(t *testing.T) {
		code, body := u.call("GET", "/api/session", "")
		if code != 200 || !strings.Contains(body, `"user":"viewer"`) || strings.Contains(body, viewerToken) {
			t.Fatalf("session: %d %s", code, body)
		}
	})
	t.Run("no cookie", func(t *testing.T) {
		resp := e.do("GET", "/api/session", nil, nil)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("without a cookie: %d", resp.StatusCode)
		}
	})
	t.Run("csrf", func(t *testing.T) {
		bad := *u
		bad.csrf = "wrong"
		if code, body := bad.call("POST", "/api/apply", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"); code != http.StatusForbidden || !strings.Contains(body, "CSRF") {
			t.Fatalf("mutation with a wrong CSRF token: %d %s", code, body)
		}
	})
	t.Run("logout", func(t *testing.T) {
		if code, _ := u.call("POST", "/api/logout", ""); code != http.StatusNoContent {
			t.Fatalf("logout: %d", code)
		}
		if code, _ := u.call("GET", "/api/session", ""); code != http.StatusUnauthorized {
			t.Fatalf("session after logout: %d", code)
		}
	})
}

func TestActionsRunAsTheUser(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "team"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
			},
		},
	}
	if _, err := e.ts.Client.AppsV1().Deployments("team").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	viewer, admin := e.login(viewerToken), e.login(adminToken)
	ref := "/api/object?group=apps&version=v1&resource=deployments&namespace=team&name=web"

	if code, body := viewer.call("GET", ref, ""); code != 200 || !strings.Contains(body, `"name":"web"`) {
		t.Fatalf("viewer get: %d %s", code, body)
	}
	if code, body := viewer.call("GET", "/api/object?version=v1&resource=configmaps&namespace=other&name=kube-root-ca.crt", ""); code != http.StatusForbidden {
		t.Fatalf("viewer get outside its namespace: %d %s", code, body)
	}
	if code, body := viewer.call("DELETE", ref, ""); code != http.StatusForbidden || !strings.Contains(body, "viewer") {
		t.Fatalf("viewer delete: %d %s (want the API server's 403 naming the user)", code, body)
	}
	scale := `{"group":"apps","version":"v1","resource":"deployments","namespace":"team","name":"web","replicas":3}`
	if code, body := viewer.call("POST", "/api/scale", scale); code != http.StatusForbidden {
		t.Fatalf("viewer scale: %d %s", code, body)
	}
	code, body := viewer.call("GET", "/api/rules?namespace=team", "")
	if code != 200 || !strings.Contains(body, `"deployments"`) || strings.Contains(body, `"delete"`) {
		t.Fatalf("viewer rules: %d %s", code, body)
	}

	if code, body := admin.call("POST", "/api/scale", scale); code != 200 {
		t.Fatalf("admin scale: %d %s", code, body)
	}
	got, err := e.ts.Client.AppsV1().Deployments("team").Get(ctx, "web", metav1.GetOptions{})
	if err != nil || *got.Spec.Replicas != 3 {
		t.Fatalf("after scale: %v %v", err, got.Spec.Replicas)
	}

	// YAML edit: a stale resourceVersion is the API server's 409.
	// The deployment controller writes status meanwhile, so a fresh copy
	// may itself conflict once; retry as a user would.
	var edited string
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, y := admin.call("GET", ref+"&format=yaml", "")
		if code != 200 || !strings.Contains(y, "replicas: 3") {
			t.Fatalf("yaml: %d %s", code, y)
		}
		edited = strings.Replace(y, "replicas: 3", "replicas: 2", 1)
		code, body := admin.call("POST", "/api/apply", edited)
		if code == 200 {
			break
		}
		if code != http.StatusConflict || time.Now().After(deadline) {
			t.Fatalf("apply: %d %s", code, body)
		}
	}
	if got, _ := e.ts.Client.AppsV1().Deployments("team").Get(ctx, "web", metav1.GetOptions{}); *got.Spec.Replicas != 2 {
		t.Fatalf("replicas after the YAML apply = %d, want 2", *got.Spec.Replicas)
	}
	if code, body := admin.call("POST", "/api/apply", edited); code != http.StatusConflict {
		t.Fatalf("apply with a stale resourceVersion: %d %s", code, body)
	}
	if code, body := admin.call("POST", "/api/apply", "a: [b"); code != http.StatusBadRequest || !strings.Contains(body, "does not parse") {
		t.Fatalf("broken YAML: %d %s", code, body)
	}
	if code, body := admin.call("POST", "/api/apply", "apiVersion: v1\nkind: Nope\nmetadata: {name: x}\n"); code != http.StatusBadRequest || !strings.Contains(body, "Nope") {
		t.Fatalf("unknown kind: %d %s", code, body)
	}
	if code, body := admin.call("POST", "/api/apply?namespace=team", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: made}\ndata: {a: b}\n"); code != 200 || !strings.Contains(body, `"create"`) {
		t.Fatalf("create from YAML: %d %s", code, body)
	}

	if code, body := admin.call("DELETE", ref, ""); code != 200 {
		t.Fatalf("admin delete: %d %s", code, body)
	}
	if _, err := e.ts.Client.AppsV1().Deployments("team").Get(ctx, "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("deployment after delete: %v", err)
	}
}

// ws is a test websocket client.
type ws struct {
	t    *testing.T
	conn *websocket.Conn
}

func (u *user) dial(t *testing.T, origin string) (*ws, *http.Response, error) {
	t.Helper()
	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: u.e.web.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}}
	hdr := http.Header{"Origin": {origin}, "Cookie": {u.cookie.Name + "=" + u.cookie.Value}}
	conn, resp, err := d.Dial("wss"+strings.TrimPrefix(u.e.web.URL, "https")+"/api/ws", hdr)
	if err != nil {
		return nil, resp, err
	}
	t.Cleanup(func() { conn.Close() })
	return &ws{t: t, conn: conn}, resp, nil
}

func (u *user) ws(t *testing.T) *ws {
	t.Helper()
	c, _, err := u.dial(t, u.e.web.URL)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *ws) send(v any) {
	c.t.Helper()
	if err := c.conn.WriteJSON(v); err != nil {
		c.t.Fatal(err)
	}
}

type msg struct {
	Type    string           `json:"type"`
	ID      string           `json:"id"`
	Seq     uint64           `json:"seq"`
	Total   int              `json:"total"`
	Order   []string         `json:"order"`
	Upsert  []map[string]any `json:"upsert"`
	Remove  []string         `json:"remove"`
	Code    int              `json:"code"`
	Reason  string           `json:"reason"`
	Message string           `json:"message"`
}

// next waits for a message that satisfies ok (10 s deadline).
func (c *ws) next(what string, ok func(m msg) bool) msg {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_ = c.conn.SetReadDeadline(deadline)
		var m msg
		if err := c.conn.ReadJSON(&m); err != nil {
			c.t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok(m) {
			return m
		}
	}
}

func sub(id, resource, ns string, extra map[string]any) map[string]any {
	m := map[string]any{"type": "subscribe", "id": id, "version": "v1", "resource": resource, "namespace": ns}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func upsertNames(m msg) []string {
	var out []string
	for _, o := range m.Upsert {
		out = append(out, o["metadata"].(map[string]any)["name"].(string))
	}
	return out
}

func createCM(t *testing.T, e *env, ns, name string, labels map[string]string) {
	t.Helper()
	if _, err := e.ts.Client.CoreV1().ConfigMaps(ns).Create(context.Background(),
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestWebsocketFilterSortPageAndDeltas(t *testing.T) {
	e := start(t)
	for i := range 30 {
		lbl := map[string]string{"tier": "back"}
		if i%3 == 0 {
			lbl["tier"] = "front"
		}
		createCM(t, e, "team", fmt.Sprintf("cm-%02d", i), lbl)
	}
	admin := e.login(adminToken)

	t.Run("origin", func(t *testing.T) {
		_, resp, err := admin.dial(t, "https://evil.example")
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("websocket from another origin: err %v resp %v", err, resp)
		}
	})
	t.Run("no session", func(t *testing.T) {
		anon := &user{e: e, cookie: &http.Cookie{Name: backend.CookieName, Value: "forged"}}
		_, resp, err := anon.dial(t, e.web.URL)
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("websocket without a session: err %v resp %v", err, resp)
		}
	})

	c := admin.ws(t)
	c.send(sub("a", "configmaps", "team", map[string]any{
		"filter": map[string]any{"text": "cm-", "labels": "tier=back"},
		"sort":   map[string]any{"by": "name", "desc": true},
		"page":   map[string]any{"offset": 2, "limit": 5},
	}))
	m := c.next("first page", func(m msg) bool { return m.Type == "page" && m.ID == "a" })
	want := []string{"team/cm-26", "team/cm-25", "team/cm-23", "team/cm-22", "team/cm-20"}
	if m.Total != 20 || strings.Join(m.Order, ",") != strings.Join(want, ",") || len(m.Upsert) != 5 {
		t.Fatalf("first page: total %d order %v upserts %d; want 20 %v 5", m.Total, m.Order, len(m.Upsert), want)
	}
	if _, ok := m.Upsert[0]["metadata"].(map[string]any)["managedFields"]; ok {
		t.Fatal("managedFields were sent")
	}

	// A new matching object inside the page arrives as a delta: only it
	// is sent, the last row falls out.
	createCM(t, e, "team", "cm-24x", map[string]string{"tier": "back"})
	m = c.next("delta", func(m msg) bool { return m.Type == "page" && m.ID == "a" })
	if m.Total != 21 || strings.Join(upsertNames(m), ",") != "cm-24x" || strings.Join(m.Remove, ",") != "team/cm-20" {
		t.Fatalf("delta: total %d upserts %v removes %v", m.Total, upsertNames(m), m.Remove)
	}
	// A non-matching object changes the total of nothing: no message; a
	// deletion of a shown row is a remove.
	createCM(t, e, "team", "cm-99", map[string]string{"tier": "front"})
	if err := e.ts.Client.CoreV1().ConfigMaps("team").Delete(context.Background(), "cm-25", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	m = c.next("delete delta", func(m msg) bool { return m.Type == "page" && m.ID == "a" })
	if m.Total != 20 || !contains(m.Remove, "team/cm-25") || strings.Join(upsertNames(m), ",") != "cm-20" {
		t.Fatalf("delete delta: total %d upserts %v removes %v", m.Total, upsertNames(m), m.Remove)
	}

	t.Run("bad input keeps the socket", func(t *testing.T) {
		if err := c.conn.WriteMessage(websocket.TextMessage, []byte("{not json")); err != nil {
			t.Fatal(err)
		}
		m := c.next("error", func(m msg) bool { return m.Type == "error" })
		if m.Code != 400 || !strings.Contains(m.Message, "bad message") {
			t.Fatalf("broken message: %+v", m)
		}
		c.send(sub("u", "nopes", "team", nil))
		m = c.next("unknown kind", func(m msg) bool { return m.Type == "error" && m.ID == "u" })
		if m.Code != 404 || !strings.Contains(m.Message, "unknown kind") {
			t.Fatalf("unknown kind: %+v", m)
		}
		c.send(sub("l", "configmaps", "team", map[string]any{"filter": map[string]any{"labels": "a in (("}}))
		m = c.next("bad selector", func(m msg) bool { return m.Type == "error" && m.ID == "l" })
		if m.Code != 400 {
			t.Fatalf("bad selector: %+v", m)
		}
		c.send(map[string]string{"type": "ping"})
		c.next("pong", func(m msg) bool { return m.Type == "pong" })
	})

	t.Run("field filter and cluster scope", func(t *testing.T) {
		c.send(sub("ns", "namespaces", "ignored", map[string]any{"filter": map[string]any{"fields": map[string]string{"status.phase": "Active", "metadata.name": "team"}}}))
		m := c.next("namespaces", func(m msg) bool { return m.Type == "page" && m.ID == "ns" })
		if m.Total != 1 || m.Order[0] != "team" {
			t.Fatalf("namespaces: %+v", m)
		}
	})
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestWebsocketAuthorizesEachSubscriptionAsTheUser(t *testing.T) {
	e := start(t)
	createCM(t, e, "team", "mine", nil)
	createCM(t, e, "other", "theirs", nil)
	c := e.login(viewerToken).ws(t)
	c.send(sub("ok", "configmaps", "team", nil))
	m := c.next("team page", func(m msg) bool { return m.ID == "ok" })
	if m.Type != "page" || !contains(m.Order, "team/mine") || contains(m.Order, "other/theirs") {
		t.Fatalf("viewer's namespace: %+v", m)
	}
	for _, tc := range []struct{ id, resource, ns string }{
		{"all", "configmaps", ""},
		{"other", "configmaps", "other"},
		{"secrets", "secrets", "team"},
		{"nodes", "nodes", ""},
	} {
		c.send(sub(tc.id, tc.resource, tc.ns, nil))
		m := c.next(tc.id, func(m msg) bool { return m.ID == tc.id })
		if m.Type != "error" || m.Code != 403 || !strings.Contains(m.Message, "viewer cannot list") {
			t.Errorf("%s %s in %q: %+v, want 403", tc.id, tc.resource, tc.ns, m)
		}
	}
}

func TestResumeAfterReconnect(t *testing.T) {
	e := start(t)
	for i := range 5 {
		createCM(t, e, "team", fmt.Sprintf("r-%d", i), nil)
	}
	admin := e.login(adminToken)
	c := admin.ws(t)
	c.send(sub("r", "configmaps", "team", map[string]any{"filter": map[string]any{"text": "r-"}}))
	first := c.next("page", func(m msg) bool { return m.Type == "page" })
	known := map[string]string{}
	for _, o := range first.Upsert {
		md := o["metadata"].(map[string]any)
		known["team/"+md["name"].(string)] = md["resourceVersion"].(string)
	}
	if len(known) != 5 {
		t.Fatalf("first page: %+v", first)
	}
	c.conn.Close()

	// While disconnected: one change, one deletion.
	ctx := context.Background()
	cm, err := e.ts.Client.CoreV1().ConfigMaps("team").Get(ctx, "r-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data = map[string]string{"x": "y"}
	if _, err := e.ts.Client.CoreV1().ConfigMaps("team").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.ts.Client.CoreV1().ConfigMaps("team").Delete(ctx, "r-3", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The change is in the shared cache before the browser comes back.
	deadline := time.Now().Add(10 * time.Second)
	c2 := admin.ws(t)
	for {
		c2.send(sub("r", "configmaps", "team", map[string]any{"filter": map[string]any{"text": "r-"}, "known": known}))
		m := c2.next("resumed page", func(m msg) bool { return m.Type == "page" })
		if m.Total == 4 {
			if got := strings.Join(upsertNames(m), ","); got != "r-1" || strings.Join(m.Remove, ",") != "team/r-3" || m.Seq <= first.Seq {
				t.Fatalf("resume sent upserts %q removes %v seq %d (first %d); want only r-1, remove r-3, a higher seq", got, m.Remove, m.Seq, first.Seq)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cache never saw the changes: %+v", m)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestOneWatchPerKind(t *testing.T) {
	e := start(t)
	createCM(t, e, "team", "shared", nil)
	var conns []*ws
	for i := range 4 {
		u := e.login(adminToken)
		c := u.ws(t)
		c.send(sub("cm", "configmaps", "team", nil))
		c.send(sub("cm2", "configmaps", "", map[string]any{"page": map[string]any{"limit": 1}}))
		c.send(sub("ns", "namespaces", "", nil))
		seen := map[string]bool{}
		c.next(fmt.Sprintf("browser %d pages", i), func(m msg) bool {
			if m.Type == "error" {
				t.Fatalf("browser %d: %+v", i, m)
			}
			seen[m.ID] = m.Type == "page" || seen[m.ID]
			return seen["cm"] && seen["cm2"] && seen["ns"]
		})
		conns = append(conns, c)
	}
	// The first subscription also started the re-authorizer's watches of
	// the four RBAC kinds (reauth.go).
	running, started := e.be.Watches()
	if running != 6 || started != 6 {
		t.Fatalf("4 browsers × 3 subscriptions on 2 kinds (+4 RBAC kinds): %d watches running, %d started; want 6 and 6", running, started)
	}
	// Every browser sees a change from the one shared watch.
	createCM(t, e, "team", "later", nil)
	for i, c := range conns {
		c.next(fmt.Sprintf("browser %d delta", i), func(m msg) bool {
			return m.Type == "page" && m.ID == "cm" && contains(upsertNames(m), "later")
		})
	}
}
