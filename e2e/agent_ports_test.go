package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/multinode"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestAgentListeningPorts enumerates every socket a real node agent
// listens on (a multinode node in its own network namespace): the agent
// API on the node's address and nothing else. Every path of the agent
// API must answer 401 without credentials or with a bad token, and 403
// to a ServiceAccount the cluster knows but never allowed on the node;
// one allowed nodes/proxy reads /healthz (so the 403s are the
// authorizer's).
func TestAgentListeningPorts(t *testing.T) {
	multinode.Require(t)
	c := multinode.Start(t, multinode.Options{Nodes: 1, Instance: 12, Bin: skiffBin(t)})
	node := c.Nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const apiPort = 10250
	socks := listeningSockets(t, node.PID())
	if len(socks) == 0 {
		t.Fatal("the agent listens on nothing; the enumeration proves nothing")
	}
	for _, s := range socks {
		if s.proto != "tcp" || s.port != apiPort || !s.ip.Equal(net.ParseIP(node.IP)) {
			t.Errorf("unexpected agent socket %s (want only tcp %s)", s, net.JoinHostPort(node.IP, strconv.Itoa(apiPort)))
		}
	}

	token := func(sa string) string {
		t.Helper()
		if _, err := c.Client.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		tr, err := c.Client.CoreV1().ServiceAccounts("default").CreateToken(ctx, sa, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	nobody, reader := token("agent-nobody"), token("agent-reader")
	if _, err := c.Client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "agent-reader"},
		Rules: []rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"nodes/proxy"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "agent-reader"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "agent-reader"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "agent-reader", Namespace: "default"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer client.CloseIdleConnections()
	base := "https://" + net.JoinHostPort(node.IP, strconv.Itoa(apiPort))
	do := func(method, path, bearer string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, base+path, nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		return resp.StatusCode, string(b)
	}

	paths := []struct{ method, path string }{
		{"GET", "/pods"}, {"GET", "/runningpods/"}, {"GET", "/healthz"}, {"GET", "/configz"}, {"GET", "/spec/"},
		{"GET", "/stats/summary"}, {"GET", "/metrics"}, {"GET", "/metrics/cadvisor"}, {"GET", "/metrics/resource"},
		{"GET", "/logs/"}, {"GET", "/containerLogs/default/x/c"}, {"GET", "/debug/pprof/"},
		{"POST", "/exec/default/x/c?command=id&output=1"}, {"POST", "/attach/default/x/c?output=1"},
		{"POST", "/portForward/default/x"}, {"POST", "/run/default/x/c?cmd=id"}, {"POST", "/checkpoint/default/x/c"},
		{"GET", "/"}, {"GET", "/../pods"}, {"GET", "//pods"},
	}
	for _, p := range paths {
		for _, cred := range []struct{ name, token string }{{"no credentials", ""}, {"a bad token", "not-a-token"}} {
			if code, body := do(p.method, p.path, cred.token); code != http.StatusUnauthorized {
				t.Errorf("%s %s with %s = %d, want 401: %.200s", p.method, p.path, cred.name, code, body)
			}
		}
		if code, body := do(p.method, p.path, nobody); code != http.StatusForbidden {
			t.Errorf("%s %s as a ServiceAccount without node access = %d, want 403: %.200s", p.method, p.path, code, body)
		}
	}
	// The positive control: the agent's authorizer lets the allowed one in
	// (RBAC may take a moment to see the new binding).
	eventually(t, 30*time.Second, func() string {
		code, body := do("GET", "/healthz", reader)
		if code != http.StatusOK || body != "ok" {
			return fmt.Sprintf("GET /healthz as a ServiceAccount with nodes/proxy = %d: %.200s", code, body)
		}
		return ""
	})
}
