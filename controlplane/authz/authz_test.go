package authz_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testserver"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// identity is a client authenticated by a client certificate of the
// cluster CA with the given user and groups.
type identity struct {
	cfg  *rest.Config
	http *http.Client
	cs   kubernetes.Interface
}

func as(t *testing.T, s *testserver.Server, user string, groups ...string) *identity {
	t.Helper()
	cfg, err := s.ComponentConfig(user, groups)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &identity{cfg: cfg, http: hc, cs: cs}
}

// impersonating is the admin impersonating user with no groups beyond
// system:authenticated.
func impersonating(t *testing.T, s *testserver.Server, user string) *identity {
	t.Helper()
	cfg := rest.CopyConfig(s.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &identity{cfg: cfg, http: hc, cs: cs}
}

// do sends a raw request and returns the status code and the body.
func (id *identity) do(t *testing.T, method, path string, body any) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, id.cfg.Host+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if method == http.MethodPatch {
		req.Header.Set("Content-Type", "application/merge-patch+json")
	}
	resp, err := id.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if strings.Contains(path, "watch=true") && resp.StatusCode == http.StatusOK {
		return resp.StatusCode, ""
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// forbiddenMessage extracts the message of a 403 Status.
func forbiddenMessage(code int, body string) string {
	if code != http.StatusForbidden {
		return ""
	}
	var st metav1.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		return "undecodable: " + body
	}
	return st.Message
}

func mustCreateNS(t *testing.T, s *testserver.Server, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := s.Client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// Pods need their service account (ServiceAccount admission).
		if _, err := s.Client.CoreV1().ServiceAccounts(n).Create(context.Background(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
}

func bindRole(t *testing.T, s *testserver.Server, ns, name string, rules []rbacv1.PolicyRule, subjects ...rbacv1.Subject) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.Client.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   subjects,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func user(name string) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: name}
}

// matrixResource is a resource or subresource of the RBAC matrix.
type matrixResource struct {
	group, version, resource, sub string
	verbs                         []string
}

func (m matrixResource) rbacName() string {
	if m.sub != "" {
		return m.resource + "/" + m.sub
	}
	return m.resource
}

// request builds the HTTP request for verb on m in namespace ns.
func (m matrixResource) request(verb, ns string) (method, path string, body any) {
	base := "/api/" + m.version
	if m.group != "" {
		base = "/apis/" + m.group + "/" + m.version
	}
	coll := base + "/namespaces/" + ns + "/" + m.resource
	item := coll + "/obj"
	if m.sub != "" {
		item += "/" + m.sub
	}
	switch verb {
	case "get":
		return http.MethodGet, item, nil
	case "list":
		return http.MethodGet, coll, nil
	case "watch":
		return http.MethodGet, coll + "?watch=true&timeoutSeconds=1", nil
	case "create":
		return http.MethodPost, coll, map[string]any{}
	case "update":
		return http.MethodPut, item, map[string]any{"metadata": map[string]any{"name": "obj"}}
	case "patch":
		return http.MethodPatch, item, map[string]any{}
	case "delete":
		return http.MethodDelete, item, nil
	case "deletecollection":
		return http.MethodDelete, coll, nil
	}
	panic(verb)
}

var allVerbs = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}

// TestAuthorization runs the authorization suite on one server.
func TestAuthorization(t *testing.T) {
	s := testserver.Start(t)
	t.Run("RBACMatrix", func(t *testing.T) { testRBACMatrix(t, s) })
	t.Run("ClusterScope", func(t *testing.T) { testClusterScope(t, s) })
	t.Run("MissingRole", func(t *testing.T) { testMissingRole(t, s) })
	t.Run("ResourceNames", func(t *testing.T) { testResourceNames(t, s) })
	t.Run("NonResourceURLs", func(t *testing.T) { testNonResourceURLs(t, s) })
	t.Run("GroupsAndServiceAccounts", func(t *testing.T) { testSubjects(t, s) })
	t.Run("Aggregation", func(t *testing.T) { testAggregation(t, s) })
	t.Run("DefaultPolicy", func(t *testing.T) { testDefaultPolicy(t, s) })
	t.Run("NodeAuthorizer", func(t *testing.T) { testNodeAuthorizer(t, s) })
	t.Run("LeastPrivilege", func(t *testing.T) { testLeastPrivilege(t, s) })
	t.Run("ReviewAPIs", func(t *testing.T) { testReviewAPIs(t, s) })
	t.Run("KubectlCanI", func(t *testing.T) { testKubectlCanI(t, s) })
}

// testRBACMatrix: in namespace m-<verb>, alice holds a Role granting only
// <verb> on every sample resource; every verb on every resource is then
// allowed exactly when it is that verb, and refused with upstream's 403
// message otherwise.
func testRBACMatrix(t *testing.T, s *testserver.Server) {
	resources := []matrixResource{
		{"", "v1", "pods", "", allVerbs},
		{"", "v1", "configmaps", "", allVerbs},
		{"", "v1", "secrets", "", allVerbs},
		{"apps", "v1", "deployments", "", allVerbs},
		{"batch", "v1", "jobs", "", allVerbs},
		{"", "v1", "pods", "status", []string{"get", "update", "patch"}},
		{"", "v1", "pods", "log", []string{"get"}},
		{"apps", "v1", "deployments", "scale", []string{"get", "update", "patch"}},
	}
	alice := as(t, s, "alice")
	for _, verb := range allVerbs {
		ns := "m-" + verb
		mustCreateNS(t, s, ns)
		rule := rbacv1.PolicyRule{Verbs: []string{verb}, APIGroups: []string{"", "apps", "batch"}}
		for _, m := range resources {
			rule.Resources = append(rule.Resources, m.rbacName())
		}
		bindRole(t, s, ns, "only-"+verb, []rbacv1.PolicyRule{rule}, user("alice"))
	}
	// The binding reaches the authorizer through the watch cache.
	eventually(t, "alice's bindings", func() error {
		for _, verb := range allVerbs {
			method, path, body := resources[0].request(verb, "m-"+verb)
			if code, resp := alice.do(t, method, path, body); code == http.StatusForbidden {
				return fmt.Errorf("%s in m-%s: %s", verb, verb, resp)
			}
		}
		return nil
	})
	for _, granted := range allVerbs {
		ns := "m-" + granted
		for _, m := range resources {
			for _, verb := range m.verbs {
				method, path, body := m.request(verb, ns)
				code, resp := alice.do(t, method, path, body)
				if verb == granted {
					if code == http.StatusForbidden || code == http.StatusUnauthorized {
						t.Errorf("%s %s in %s with a %s grant: %d %s", verb, m.rbacName(), ns, granted, code, resp)
					}
					continue
				}
				name := ` "obj"`
				if verb == "list" || verb == "watch" || verb == "create" || verb == "deletecollection" {
					name = ""
				}
				want := fmt.Sprintf(`%s%s is forbidden: User "alice" cannot %s resource %q in API group %q in the namespace %q`, m.resource, name, verb, m.rbacName(), m.group, ns)
				if m.group != "" {
					want = fmt.Sprintf(`%s.%s%s is forbidden: User "alice" cannot %s resource %q in API group %q in the namespace %q`, m.resource, m.group, name, verb, m.rbacName(), m.group, ns)
				}
				if got := forbiddenMessage(code, resp); got != want {
					t.Errorf("%s %s in %s (grant %s):\n got %d %q\nwant 403 %q", verb, m.rbacName(), ns, granted, code, got, want)
				}
			}
		}
	}
}
