package authz_test

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/internal/testserver"
	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// testLeastPrivilege: each in-process component identity holds its role
// and nothing more.
func testLeastPrivilege(t *testing.T, s *testserver.Server) {
	cases := []struct {
		user, method, path, want string
	}{
		{"system:kube-scheduler", "GET", "/api/v1/pods", ""},
		{"system:kube-scheduler", "GET", "/api/v1/nodes", ""},
		{"system:kube-scheduler", "GET", "/api/v1/namespaces/default/secrets", `secrets is forbidden: User "system:kube-scheduler" cannot list resource "secrets" in API group "" in the namespace "default"`},
		{"system:kube-scheduler", "GET", "/api/v1/namespaces/default/secrets/x", `secrets "x" is forbidden: User "system:kube-scheduler" cannot get resource "secrets" in API group "" in the namespace "default"`},
		{"system:kube-scheduler", "DELETE", "/api/v1/nodes/x", `nodes "x" is forbidden: User "system:kube-scheduler" cannot delete resource "nodes" in API group "" at the cluster scope`},
		{"system:kube-controller-manager", "DELETE", "/api/v1/namespaces/default/pods/x", ""},
		{"system:kube-controller-manager", "POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", `clusterrolebindings.rbac.authorization.k8s.io is forbidden: User "system:kube-controller-manager" cannot create resource "clusterrolebindings" in API group "rbac.authorization.k8s.io" at the cluster scope`},
		{"system:skiff:crd-controller", "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", ""},
		{"system:skiff:crd-controller", "GET", "/api/v1/namespaces/default/secrets/x", `secrets "x" is forbidden: User "system:skiff:crd-controller" cannot get resource "secrets" in API group "" in the namespace "default"`},
		{"system:skiff:crd-controller", "POST", "/api/v1/namespaces/default/pods", `pods is forbidden: User "system:skiff:crd-controller" cannot create resource "pods" in API group "" in the namespace "default"`},
		{"system:skiff:kubernetes-service", "GET", "/api/v1/namespaces/default/services/kubernetes", ""},
		{"system:skiff:kubernetes-service", "GET", "/api/v1/namespaces/default/services/other", `services "other" is forbidden: User "system:skiff:kubernetes-service" cannot get resource "services" in API group "" in the namespace "default"`},
		// Its Roles are in default (kubernetes) and kube-system (kube-dns) only.
		{"system:skiff:kubernetes-service", "GET", "/api/v1/namespaces/kube-public/services", `services is forbidden: User "system:skiff:kubernetes-service" cannot list resource "services" in API group "" in the namespace "kube-public"`},
		{"system:skiff:kubernetes-service", "GET", "/api/v1/namespaces/kube-system/services/other", `services "other" is forbidden: User "system:skiff:kubernetes-service" cannot get resource "services" in API group "" in the namespace "kube-system"`},
		{"system:serviceaccount:kube-system:clusterrole-aggregation-controller", "GET", "/api/v1/namespaces/default/configmaps", `configmaps is forbidden: User "system:serviceaccount:kube-system:clusterrole-aggregation-controller" cannot list resource "configmaps" in API group "" in the namespace "default"`},
	}
	for _, c := range cases {
		id := as
		if strings.HasPrefix(c.user, "system:serviceaccount:") {
			// The server holds this service account's client certificate
			// (with its groups) already; one certificate per user.
			id = func(t *testing.T, s *testserver.Server, user string, _ ...string) *identity {
				return impersonating(t, s, user)
			}
		}
		expect(t, id(t, s, c.user), c.method, c.path, c.want)
	}
	// The components still do their work: the kubernetes service controller
	// keeps its Service (created at start with its identity).
	if _, err := s.Client.CoreV1().Endpoints("default").Get(context.Background(), "kubernetes", metav1.GetOptions{}); err != nil {
		t.Errorf("kubernetes endpoints: %v", err)
	}
}

// testReviewAPIs exercises the four review kinds through client-go.
func testReviewAPIs(t *testing.T, s *testserver.Server) {
	ctx := context.Background()
	mustCreateNS(t, s, "reviews")
	bindRole(t, s, "reviews", "ivy-pods", []rbacv1.PolicyRule{{Verbs: []string{"get", "list"}, APIGroups: []string{""}, Resources: []string{"pods"}}}, user("ivy"))
	ivy := as(t, s, "ivy")
	eventually(t, "ivy's binding", func() error {
		_, err := ivy.cs.CoreV1().Pods("reviews").List(ctx, metav1.ListOptions{})
		return err
	})
	sar := func(u string, attrs *authorizationv1.ResourceAttributes) authorizationv1.SubjectAccessReviewStatus {
		out, err := s.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: u, ResourceAttributes: attrs}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return out.Status
	}
	if st := sar("ivy", &authorizationv1.ResourceAttributes{Namespace: "reviews", Verb: "list", Resource: "pods"}); !st.Allowed || st.Reason != `RBAC: allowed by RoleBinding "ivy-pods/reviews" of Role "ivy-pods" to User "ivy"` {
		t.Errorf("SAR ivy list pods: %+v", st)
	}
	if st := sar("ivy", &authorizationv1.ResourceAttributes{Namespace: "reviews", Verb: "delete", Resource: "pods"}); st.Allowed {
		t.Errorf("SAR ivy delete pods: %+v", st)
	}
	// SubjectAccessReview needs a user or a group; SSAR needs attributes.
	if _, err := s.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "get"}}}, metav1.CreateOptions{}); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "at least one of user or group must be specified") {
		t.Errorf("SAR without user: %v", err)
	}
	if _, err := ivy.cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{}, metav1.CreateOptions{}); !apierrors.IsInvalid(err) {
		t.Errorf("SSAR without attributes: %v", err)
	}
	// Only create is served; nothing is stored.
	admin := &identity{cfg: s.Config, http: mustHTTP(t, s)}
	if code, body := admin.do(t, "GET", "/apis/authorization.k8s.io/v1/subjectaccessreviews", nil); code != 405 {
		t.Errorf("list of SubjectAccessReviews: %d %s, want 405", code, body)
	}
	// A plain user may not ask about others (SAR), only about itself.
	if _, err := ivy.cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: "ivy", ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "get"}}}, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("ivy creating a SAR: %v, want forbidden", err)
	}
	ssar, err := ivy.cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: "reviews", Verb: "get", Resource: "pods", Name: "p"}}}, metav1.CreateOptions{})
	if err != nil || !ssar.Status.Allowed {
		t.Errorf("SSAR ivy get pod: %v %+v", err, ssar)
	}
	// LocalSubjectAccessReview: the namespace must match.
	lsar := &authorizationv1.LocalSubjectAccessReview{ObjectMeta: metav1.ObjectMeta{Namespace: "reviews"}, Spec: authorizationv1.SubjectAccessReviewSpec{User: "ivy", ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: "other", Verb: "get", Resource: "pods"}}}
	if _, err := s.Client.AuthorizationV1().LocalSubjectAccessReviews("reviews").Create(ctx, lsar, metav1.CreateOptions{}); !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), "spec.resourceAttributes.namespace must match namespace: reviews") {
		t.Errorf("LSAR namespace mismatch: %v", err)
	}
	lsar.Spec.ResourceAttributes.Namespace = ""
	out, err := s.Client.AuthorizationV1().LocalSubjectAccessReviews("reviews").Create(ctx, lsar, metav1.CreateOptions{})
	if err != nil || !out.Status.Allowed {
		t.Errorf("LSAR: %v %+v", err, out)
	}
	// Rules review lists the namespace's grants and the cluster-wide ones.
	rr, err := ivy.cs.AuthorizationV1().SelfSubjectRulesReviews().Create(ctx, &authorizationv1.SelfSubjectRulesReview{Spec: authorizationv1.SelfSubjectRulesReviewSpec{Namespace: "reviews"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var sawPods, sawSSAR bool
	for _, r := range rr.Status.ResourceRules {
		sawPods = sawPods || (len(r.Resources) == 1 && r.Resources[0] == "pods" && strings.Join(r.Verbs, ",") == "get,list")
		sawSSAR = sawSSAR || (len(r.Resources) > 0 && r.Resources[0] == "selfsubjectaccessreviews")
	}
	if !sawPods || !sawSSAR || rr.Status.Incomplete {
		t.Errorf("rules review: %+v", rr.Status)
	}
}

// testKubectlCanI runs the real kubectl.
func testKubectlCanI(t *testing.T, s *testserver.Server) {
	if _, err := os.Stat("/usr/bin/kubectl"); err != nil {
		t.Skip("kubectl not installed")
	}
	mustCreateNS(t, s, "cani")
	bindRole(t, s, "cani", "jack-deploys", []rbacv1.PolicyRule{
		{Verbs: []string{"get", "list", "watch"}, APIGroups: []string{"apps"}, Resources: []string{"deployments"}},
		{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"pods/log"}},
	}, user("jack"))
	kubectl := func(args ...string) (string, int) {
		cmd := exec.Command("/usr/bin/kubectl", append([]string{"--kubeconfig", s.Kubeconfig()}, args...)...)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out)), code
	}
	eventually(t, "jack's binding", func() error {
		if out, code := kubectl("auth", "can-i", "list", "deployments.apps", "-n", "cani", "--as", "jack"); code != 0 {
			return &canIError{out}
		}
		return nil
	})
	for _, c := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"auth", "can-i", "create", "pods"}, "yes", 0},
		{[]string{"auth", "can-i", "*", "*"}, "yes", 0},
		{[]string{"auth", "can-i", "get", "deployments", "-n", "cani", "--as", "jack"}, "yes", 0},
		{[]string{"auth", "can-i", "delete", "deployments", "-n", "cani", "--as", "jack"}, "no", 1},
		{[]string{"auth", "can-i", "get", "deployments", "-n", "default", "--as", "jack"}, "no", 1},
		{[]string{"auth", "can-i", "get", "pods", "--subresource", "log", "-n", "cani", "--as", "jack"}, "yes", 0},
		{[]string{"auth", "can-i", "get", "pods", "-n", "cani", "--as", "jack"}, "no", 1},
		{[]string{"auth", "can-i", "get", "/apis", "--as", "jack"}, "yes", 0},
		{[]string{"auth", "can-i", "get", "/metrics", "--as", "jack"}, "no", 1},
		{[]string{"auth", "can-i", "list", "secrets", "-n", "kube-system", "--as", "system:kube-scheduler"}, "no", 1},
		{[]string{"auth", "can-i", "list", "pods", "--as", "system:kube-scheduler"}, "yes", 0},
		{[]string{"auth", "can-i", "list", "pods", "--as", "nobody", "--as-group", "system:masters"}, "yes", 0},
	} {
		out, code := kubectl(c.args...)
		if code != c.code || out != c.want {
			t.Errorf("kubectl %s: %q (exit %d), want %q (exit %d)", strings.Join(c.args, " "), out, code, c.want, c.code)
		}
	}
	out, code := kubectl("auth", "can-i", "--list", "-n", "cani", "--as", "jack")
	if code != 0 {
		t.Fatalf("can-i --list: exit %d: %s", code, out)
	}
	for _, want := range []string{"deployments.apps", "pods/log", "selfsubjectaccessreviews.authorization.k8s.io", "[/apis/*]"} {
		if !strings.Contains(out, want) {
			t.Errorf("can-i --list lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "secrets") {
		t.Errorf("can-i --list shows secrets:\n%s", out)
	}
	// A user who may not impersonate cannot use --as.
	cfgPath := writeKubeconfig(t, s, "kate")
	cmd := exec.Command("/usr/bin/kubectl", "--kubeconfig", cfgPath, "auth", "can-i", "get", "pods", "--as", "jack")
	b, _ := cmd.CombinedOutput()
	if !strings.Contains(string(b), `"jack" is forbidden: User "kate" cannot impersonate resource "users"`) {
		t.Errorf("kate impersonating: %s", b)
	}
}

type canIError struct{ out string }

func (e *canIError) Error() string { return e.out }

// writeKubeconfig writes a kubeconfig for user (a client certificate of
// the cluster CA).
func writeKubeconfig(t *testing.T, s *testserver.Server, user string) string {
	t.Helper()
	cfg, err := s.ComponentConfig(user, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := rest.LoadTLSFiles(cfg); err != nil { // the certificate is a rotating file
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), user+".kubeconfig")
	if err := pki.WriteKubeconfig(path, cfg.Host, user, cfg.CAData, cfg.CertData, cfg.KeyData); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustHTTP(t *testing.T, s *testserver.Server) *http.Client {
	t.Helper()
	hc, err := rest.HTTPClientFor(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	return hc
}
