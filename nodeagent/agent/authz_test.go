package agent_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/pki"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestAgentAPIAuthorization calls the agent's API directly: a certificate
// of the cluster CA only authenticates; every call is authorized with a
// SubjectAccessReview on nodes/<subresource>, and bearer tokens are
// checked with a TokenReview.
func TestAgentAPIAuthorization(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(e.srv.Config.TLSClientConfig.CAData) {
		t.Fatal("no cluster CA in the admin config")
	}
	clientFor := func(user string, groups []string) *http.Client {
		t.Helper()
		tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		if user != "" {
			rc, err := e.srv.ComponentConfig(user, groups)
			if err != nil {
				t.Fatal(err)
			}
			cert, err := tls.LoadX509KeyPair(rc.TLSClientConfig.CertFile, rc.TLSClientConfig.KeyFile)
			if err != nil {
				t.Fatal(err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	}
	base := "https://" + e.agent.APIAddress()
	call := func(c *http.Client, method, path, token string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	alice := clientFor("alice", []string{"developers"})
	for _, tc := range []struct{ method, path, want string }{
		{"GET", "/containerLogs/default/p/c", "Forbidden (user=alice, verb=get, resource=nodes, subresource=proxy)"},
		{"POST", "/exec/default/p/c?command=id&output=1", "Forbidden (user=alice, verb=create, resource=nodes, subresource=proxy)"},
		{"GET", "/healthz", "Forbidden (user=alice, verb=get, resource=nodes, subresource=proxy)"},
		{"GET", "/stats/summary", "Forbidden (user=alice, verb=get, resource=nodes, subresource=stats)"},
	} {
		if code, body := call(alice, tc.method, tc.path, ""); code != http.StatusForbidden || !strings.Contains(body, tc.want) {
			t.Errorf("alice %s %s = %d %q, want 403 %q", tc.method, tc.path, code, body, tc.want)
		}
	}
	if code, body := call(clientFor("", nil), "GET", "/healthz", ""); code != http.StatusUnauthorized {
		t.Errorf("no credentials: %d %q, want 401", code, body)
	}
	if code, body := call(clientFor("", nil), "GET", "/healthz", "not-a-token"); code != http.StatusUnauthorized {
		t.Errorf("bad token: %d %q, want 401", code, body)
	}
	// The identity the API server proxies with: allowed by default RBAC
	// (system:kubelet-api-admin) even without its system:masters group.
	// (The server holds this user's certificate, with the group, already:
	// one per user since rotation; this one is minted from the cluster CA.)
	ca, err := pki.LoadOrCreateCA(filepath.Join(e.srv.DataDir, "tls"), "server-ca", "skiff-server-ca")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue("kube-apiserver-kubelet-client", nil, nil, nil, false, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kcCert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	kc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{kcCert}}}}
	for _, tc := range []struct{ method, path string }{{"GET", "/healthz"}, {"GET", "/stats/summary"}} {
		if code, body := call(kc, tc.method, tc.path, ""); code == http.StatusForbidden || code == http.StatusUnauthorized {
			t.Errorf("API server's kubelet client: %s %s = %d %q", tc.method, tc.path, code, body)
		}
	}

	// Bearer tokens: a service account granted nodes/proxy gets in, one
	// without does not.
	cs := e.srv.Client
	for _, n := range []string{"reader", "nobody"} {
		if _, err := cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "node-proxy-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes/proxy"}, Verbs: []string{"get"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "node-proxy-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "node-proxy-reader"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "default", Name: "reader"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	token := func(sa string) string {
		tr, err := cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, sa, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	anon := clientFor("", nil)
	// RBAC reaches the authorizer through the watch cache: poll (past
	// the agent's 30 s cache of a denial).
	deadline := time.Now().Add(45 * time.Second)
	readerTok := token("reader")
	for {
		code, body := call(anon, "GET", "/healthz", readerTok)
		if code == http.StatusOK && body == "ok" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reader token: %d %q", code, body)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if code, body := call(anon, "POST", "/exec/default/p/c?command=id&output=1", readerTok); code != http.StatusForbidden ||
		!strings.Contains(body, "user=system:serviceaccount:default:reader, verb=create") {
		t.Errorf("reader may only get: POST /exec = %d %q", code, body)
	}
	if code, body := call(anon, "GET", "/healthz", token("nobody")); code != http.StatusForbidden ||
		!strings.Contains(body, "Forbidden (user=system:serviceaccount:default:nobody, verb=get, resource=nodes, subresource=proxy)") {
		t.Errorf("nobody token: %d %q", code, body)
	}
}
