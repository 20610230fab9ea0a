package backend_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/skiffhq/skiff/backend"
	"github.com/skiffhq/skiff/controlplane/authz/bootstrap"
	"github.com/skiffhq/skiff/controlplane/pki"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// certDashboard is a dashboard served by Server.Serve (the real TLS
// listener) with the cluster CA as its client CA.
type certDashboard struct {
	t   *testing.T
	url string
	ca  *pki.CA
}

func serveWithClientCAs(t *testing.T, e *env) *certDashboard {
	t.Helper()
	ca, err := pki.LoadOrCreateCA(filepath.Join(e.ts.DataDir, "tls"), "server-ca", "skiff-server-ca")
	if err != nil {
		t.Fatal(err)
	}
	cc, err := e.ts.ComponentConfig(bootstrap.UserDashboard, nil)
	if err != nil {
		t.Fatal(err)
	}
	be, err := backend.New(backend.Options{CacheConfig: cc, ClientCAs: ca.Pool(),
		Logger: slog.New(slog.DiscardHandler), IdleWatch: time.Hour, ReauthInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue("dashboard", nil, []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}, true, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	serving, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- be.Serve(ctx, ln, &serving) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return &certDashboard{t: t, url: "https://" + ln.Addr().String(), ca: ca}
}

// browser is an HTTPS client of the dashboard with an optional client
// certificate, and its session once logged in.
type browser struct {
	d      *certDashboard
	client *http.Client
	cookie *http.Cookie
	csrf   string
}

func (d *certDashboard) browser(certPEM, keyPEM []byte) *browser {
	d.t.Helper()
	tc := &tls.Config{RootCAs: d.ca.Pool(), MinVersion: tls.VersionTLS12}
	if certPEM != nil {
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			d.t.Fatal(err)
		}
		// Sent whatever CAs the server names (a Go client would withhold
		// another CA's certificate; a user can still pick it).
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
	}
	return &browser{d: d, client: &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 30 * time.Second}}
}

func (b *browser) do(method, path, body string) (*http.Response, string) {
	b.d.t.Helper()
	req, err := http.NewRequest(method, b.d.url+path, strings.NewReader(body))
	if err != nil {
		b.d.t.Fatal(err)
	}
	req.Header.Set("Origin", b.d.url)
	if b.cookie != nil {
		req.AddCookie(b.cookie)
		req.Header.Set("X-CSRF-Token", b.csrf)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.d.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, string(data)
}

// login posts body to /api/login and keeps the session on success.
func (b *browser) login(body string) (int, string) {
	b.d.t.Helper()
	resp, data := b.do("POST", "/api/login", body)
	if resp.StatusCode == http.StatusOK {
		var info struct{ CSRF string }
		if err := json.Unmarshal([]byte(data), &info); err != nil {
			b.d.t.Fatal(err)
		}
		b.csrf = info.CSRF
		for _, c := range resp.Cookies() {
			if c.Name == backend.CookieName {
				b.cookie = c
			}
		}
		if b.cookie == nil {
			b.d.t.Fatal("login set no session cookie")
		}
	}
	return resp.StatusCode, data
}

func (b *browser) call(method, path string) (int, string) {
	b.d.t.Helper()
	resp, data := b.do(method, path, "")
	return resp.StatusCode, data
}

func (b *browser) canI(verb, resource, ns string) bool {
	b.d.t.Helper()
	code, body := b.call("GET", "/api/access?verb="+verb+"&resource="+resource+"&namespace="+ns)
	if code != http.StatusOK {
		b.d.t.Fatalf("access review: %d %s", code, body)
	}
	return strings.Contains(body, `"allowed":true`)
}

func notAfterOf(t *testing.T, certPEM []byte) time.Time {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.NotAfter
}

// TestCertificateLogin: over the dashboard's real TLS listener, a client
// certificate of the cluster CA (CN=alice, O=devs) logs in as alice with
// her groups and her RBAC (pods in team through a Role bound to group
// devs, nothing in other), in a session that ends with the certificate;
// a user RBAC grants nothing gets 403s; certificates of another CA or
// expired ones are refused with a reason; without a certificate,
// certificate login is refused and token login still works.
func TestCertificateLogin(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	if _, err := e.ts.Client.RbacV1().Roles("team").Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ts.Client.RbacV1().RoleBindings("team").Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "devs-read-pods"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pod-reader"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "devs"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	createPod(t, e, "team", "p1")
	createPod(t, e, "other", "p2")
	d := serveWithClientCAs(t, e)

	// The session (8h by default) ends with the certificate (2h).
	aliceCert, aliceKey, err := d.ca.Issue("alice", []string{"devs"}, nil, nil, false, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	alice := d.browser(aliceCert, aliceKey)

	t.Run("certificate info", func(t *testing.T) {
		code, body := alice.call("GET", "/api/login/certificate")
		var info struct {
			Enabled bool
			User    string
			Groups  []string
		}
		if err := json.Unmarshal([]byte(body), &info); err != nil || code != 200 {
			t.Fatalf("%d %s %v", code, body, err)
		}
		if !info.Enabled || info.User != "alice" || !contains(info.Groups, "devs") {
			t.Fatalf("certificate info: %s", body)
		}
	})
	t.Run("foreign origin", func(t *testing.T) {
		req, _ := http.NewRequest("POST", d.url+"/api/login", strings.NewReader(`{"method":"certificate"}`))
		req.Header.Set("Origin", "https://evil.example")
		resp, err := alice.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
			t.Fatalf("certificate login from another origin: %d", resp.StatusCode)
		}
	})
	code, body := alice.login(`{"method":"certificate"}`)
	if code != http.StatusOK || !strings.Contains(body, `"user":"alice"`) || !strings.Contains(body, `"devs"`) {
		t.Fatalf("certificate login: %d %s", code, body)
	}
	t.Run("cookie", func(t *testing.T) {
		c := alice.cookie
		if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || len(c.Value) < 40 {
			t.Fatalf("cookie %+v: want a random id, HttpOnly, Secure, SameSite=Strict", c)
		}
		if na := notAfterOf(t, aliceCert); c.Expires.After(na) || c.Expires.Before(na.Add(-time.Second)) {
			t.Fatalf("cookie expires %v, want the certificate's NotAfter %v", c.Expires, na)
		}
	})
	t.Run("alice's view", func(t *testing.T) {
		if code, body := alice.call("GET", "/api/session"); code != 200 || !strings.Contains(body, `"user":"alice"`) {
			t.Fatalf("session: %d %s", code, body)
		}
		if !alice.canI("list", "pods", "team") || alice.canI("list", "pods", "other") || alice.canI("delete", "pods", "team") || alice.canI("list", "secrets", "team") {
			t.Fatal("alice's access reviews are not her Role's")
		}
		if code, body := alice.call("GET", "/api/object?version=v1&resource=pods&namespace=team&name=p1"); code != 200 || !strings.Contains(body, `"p1"`) {
			t.Fatalf("get a pod in team: %d %s", code, body)
		}
		if code, body := alice.call("GET", "/api/object?version=v1&resource=pods&namespace=other&name=p2"); code != http.StatusForbidden || !strings.Contains(body, `User \"alice\" cannot get`) {
			t.Fatalf("get a pod in other: %d %s", code, body)
		}
		if code, body := alice.call("DELETE", "/api/object?version=v1&resource=pods&namespace=team&name=p1"); code != http.StatusForbidden {
			t.Fatalf("delete a pod in team: %d %s", code, body)
		}
	})
	t.Run("alice's live tables", func(t *testing.T) {
		dl := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: d.ca.Pool()}}
		conn, _, err := dl.Dial("wss"+strings.TrimPrefix(d.url, "https")+"/api/ws",
			http.Header{"Origin": {d.url}, "Cookie": {alice.cookie.Name + "=" + alice.cookie.Value}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		c := &ws{t: t, conn: conn}
		c.send(sub("team", "pods", "team", nil))
		if m := c.next("team pods", func(m msg) bool { return m.ID == "team" }); m.Type != "page" || !contains(m.Order, "team/p1") || contains(m.Order, "other/p2") {
			t.Fatalf("alice's pods in team: %+v", m)
		}
		for _, tc := range []struct{ id, ns string }{{"other", "other"}, {"all", ""}} {
			c.send(sub(tc.id, "pods", tc.ns, nil))
			if m := c.next(tc.id, func(m msg) bool { return m.ID == tc.id }); m.Type != "error" || m.Code != 403 || !strings.Contains(m.Message, "alice cannot list") {
				t.Errorf("alice's pods in %q: %+v, want 403", tc.ns, m)
			}
		}
	})
	t.Run("a user RBAC denies sees 403s", func(t *testing.T) {
		// Name and group of an admin elsewhere do not matter: bob's only
		// group is one nothing is bound to.
		c, k, err := d.ca.Issue("bob", []string{"nobody"}, nil, nil, false, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		bob := d.browser(c, k)
		if code, body := bob.login(`{"method":"certificate"}`); code != 200 {
			t.Fatalf("bob's login: %d %s", code, body)
		}
		if bob.canI("list", "pods", "team") || bob.canI("list", "pods", "") {
			t.Fatal("bob may list pods")
		}
		if code, body := bob.call("GET", "/api/object?version=v1&resource=pods&namespace=team&name=p1"); code != http.StatusForbidden || !strings.Contains(body, `User \"bob\" cannot get`) {
			t.Fatalf("bob gets a pod: %d %s", code, body)
		}
		if code, body := bob.call("GET", "/api/discovery"); code != 200 {
			t.Fatalf("bob's discovery: %d %s", code, body)
		}
	})
	t.Run("logout", func(t *testing.T) {
		if code, _ := alice.call("POST", "/api/logout"); code != http.StatusNoContent {
			t.Fatalf("logout: %d", code)
		}
		if code, _ := alice.call("GET", "/api/session"); code != http.StatusUnauthorized {
			t.Fatalf("session after logout: %d", code)
		}
	})
	t.Run("the session ends with the certificate", func(t *testing.T) {
		c, k, err := d.ca.Issue("alice", []string{"devs"}, nil, nil, false, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		b := d.browser(c, k)
		if code, body := b.login(`{"method":"certificate"}`); code != 200 {
			t.Fatalf("login: %d %s", code, body)
		}
		if code, body := b.call("GET", "/api/session"); code != 200 {
			t.Fatalf("session before the certificate expired: %d %s", code, body)
		}
		time.Sleep(time.Until(notAfterOf(t, c)) + 1100*time.Millisecond)
		if code, body := b.call("GET", "/api/session"); code != http.StatusUnauthorized {
			t.Fatalf("session after the certificate expired: %d %s", code, body)
		}
		if code, body := b.login(`{"method":"certificate"}`); code != http.StatusUnauthorized || !strings.Contains(body, "expired at") {
			t.Fatalf("login again with the expired certificate: %d %s", code, body)
		}
	})
	t.Run("another CA", func(t *testing.T) {
		other, err := pki.LoadOrCreateCA(t.TempDir(), "ca", "elsewhere")
		if err != nil {
			t.Fatal(err)
		}
		c, k, err := other.Issue("alice", []string{"system:masters"}, nil, nil, false, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		b := d.browser(c, k)
		if _, body := b.call("GET", "/api/login/certificate"); strings.Contains(body, `"user"`) || !strings.Contains(body, "not signed by this cluster's client CA") {
			t.Fatalf("certificate info: %s", body)
		}
		code, body := b.login(`{"method":"certificate"}`)
		if code != http.StatusUnauthorized || !strings.Contains(body, "not signed by this cluster's client CA") || b.cookie != nil {
			t.Fatalf("login with another CA's certificate: %d %s", code, body)
		}
	})
	t.Run("expired", func(t *testing.T) {
		c, k, err := d.ca.Issue("alice", []string{"devs"}, nil, nil, false, -time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		b := d.browser(c, k)
		code, body := b.login(`{"method":"certificate"}`)
		if code != http.StatusUnauthorized || !strings.Contains(body, `client certificate \"alice\" expired at`) || b.cookie != nil {
			t.Fatalf("login with an expired certificate: %d %s", code, body)
		}
	})
	t.Run("no certificate", func(t *testing.T) {
		b := d.browser(nil, nil)
		if _, body := b.call("GET", "/api/login/certificate"); body != "{\"enabled\":true}\n" {
			t.Fatalf("certificate info without a certificate: %q", body)
		}
		code, body := b.login(`{"method":"certificate"}`)
		if code != http.StatusUnauthorized || !strings.Contains(body, "presented no client certificate") || b.cookie != nil {
			t.Fatalf("certificate login without a certificate: %d %s", code, body)
		}
		if code, body := b.login(fmt.Sprintf(`{"token":%q}`, viewerToken)); code != 200 || !strings.Contains(body, `"user":"viewer"`) {
			t.Fatalf("token login: %d %s", code, body)
		}
		if code, body := b.login(`{"method":"password"}`); code != http.StatusBadRequest {
			t.Fatalf("unknown method: %d %s", code, body)
		}
	})
}

// TestCertificateLoginOff: without ClientCAs the dashboard says so and
// refuses certificate logins.
func TestCertificateLoginOff(t *testing.T) {
	e := start(t)
	resp := e.do("GET", "/api/login/certificate", nil, nil)
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(data) != "{\"enabled\":false}\n" {
		t.Fatalf("certificate info: %q", data)
	}
	resp = e.do("POST", "/api/login", strings.NewReader(`{"method":"certificate"}`), map[string]string{"Origin": e.web.URL})
	data, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(data), "does not accept client certificates") {
		t.Fatalf("certificate login: %d %s", resp.StatusCode, data)
	}
}
