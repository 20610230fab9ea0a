package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/addons/metrics"
	"github.com/skiffhq/skiff/addons/metrics/extserver"
	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/internal/extauth"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/nodeagent/hollow"
	"github.com/skiffhq/skiff/server"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
	"k8s.io/utils/ptr"
)

// extEnv is `skiff metrics --secure-port --register-apiservice` in
// process: a standalone collector and its extension API server, running
// as a ServiceAccount with the rights the README lists, against an API
// server whose built-in metrics add-on is off.
type extEnv struct {
	srv     *testserver.Server
	nodes   []string
	ext     *extserver.Server
	frontCA *pki.CA
	url     string
	roots   *x509.CertPool
	// published is the ConfigMap's data as the API server published it
	// (its own front-proxy CA), before the test wrote its own.
	published map[string]string
}

// frontProxyAllowed is the front proxy certificate's allowed name.
const frontProxyAllowed = "front-proxy-client"

func startExtension(t *testing.T) *extEnv {
	t.Helper()
	e := &extEnv{}
	e.srv = testserver.Start(t, func(c *server.Config) { c.Disable = append(c.Disable, server.MetricsName) })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	admin := e.srv.Client

	// The ConfigMap, with the cluster CA as client CA and a front proxy CA
	// made here, which the test's requests present. The API server's own
	// (published at its start) is put back for the requests through its
	// aggregation layer.
	if cm, err := admin.CoreV1().ConfigMaps(extauth.ConfigMapNamespace).Get(ctx, extauth.ConfigMapName, metav1.GetOptions{}); err == nil {
		e.published = cm.Data
	}
	var err error
	if e.frontCA, err = pki.LoadOrCreateCA(t.TempDir(), "front-proxy-ca", "test-front-proxy-ca"); err != nil {
		t.Fatal(err)
	}
	writeAuthConfigMap(t, admin, map[string]string{
		extauth.KeyClientCA:            string(e.srv.Config.TLSClientConfig.CAData),
		extauth.KeyRequestHeaderCA:     string(e.frontCA.CertPEM),
		extauth.KeyAllowedNames:        `["` + frontProxyAllowed + `"]`,
		extauth.KeyUsernameHeaders:     `["X-Remote-User"]`,
		extauth.KeyGroupHeaders:        `["X-Remote-Group"]`,
		extauth.KeyExtraHeaderPrefixes: `["X-Remote-Extra-"]`,
	})

	// The add-on's identity: a ServiceAccount with what the README lists.
	rc := serviceAccountConfig(t, e.srv, "kube-system", "skiff-metrics",
		[]rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"nodes", "pods"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{""}, Resources: []string{"nodes/stats"}, Verbs: []string{"get"}},
			{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "create", "update"}},
			{APIGroups: []string{"apiregistration.k8s.io"}, Resources: []string{"apiservices"}, Verbs: []string{"get", "create", "update"}},
		}, "system:auth-delegator")
	bindRole(t, admin, "kube-system", "skiff-metrics-auth-reader", "extension-apiserver-authentication-reader", rbacv1.Subject{Kind: "ServiceAccount", Namespace: "kube-system", Name: "skiff-metrics"})
	cs := kubernetes.NewForConfigOrDie(rc)
	dc := dynamic.NewForConfigOrDie(rc)

	// Hollow nodes and their summaries.
	hc, err := hollow.Start(ctx, e.srv.Config, hollow.Options{Nodes: 2, NamePrefix: fmt.Sprintf("ext-%d-", time.Now().UnixNano()%1e6), LeaseInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.Stop)
	e.nodes = hc.NodeNames()
	stats := httptest.NewServer(hc.StatsHandler())
	t.Cleanup(stats.Close)

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("SKIFF_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	c, err := metrics.New(metrics.Options{Client: cs, Interval: time.Second, Logger: log,
		Scraper: &metrics.HTTPScraper{Client: stats.Client(), URL: func(n *corev1.Node) (string, error) {
			return stats.URL + "/" + n.Name + "/stats/summary", nil
		}}})
	if err != nil {
		t.Fatal(err)
	}
	e.ext, err = extserver.New(extserver.Options{
		Collector: c, Client: cs, Dynamic: dc, BindAddress: "127.0.0.1", Port: 0, Register: true, Logger: log,
		// Denials are cached 30 s by default; the test grants access after
		// a denial.
		Auth: extauth.Options{DeniedTTL: 200 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 2)
	go func() { _ = c.Run(ctx); done <- struct{}{} }()
	go func() {
		if err := e.ext.Run(ctx); err != nil {
			t.Errorf("extension server: %v", err)
		}
		done <- struct{}{}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		<-done
	})
	e.url = "https://" + e.ext.Addr().String()
	e.roots = x509.NewCertPool()
	if !e.roots.AppendCertsFromPEM(e.ext.CABundle()) {
		t.Fatal("no CA bundle")
	}
	eventually(t, 30*time.Second, "metrics of both nodes", func() error {
		if l := c.NodeMetricsList(nil); len(l.Items) != 2 {
			return fmt.Errorf("%d node metrics", len(l.Items))
		}
		return nil
	})
	return e
}

func writeAuthConfigMap(t *testing.T, cs kubernetes.Interface, data map[string]string) {
	t.Helper()
	ctx := context.Background()
	cms := cs.CoreV1().ConfigMaps(extauth.ConfigMapNamespace)
	cm, err := cms.Get(ctx, extauth.ConfigMapName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: extauth.ConfigMapNamespace, Name: extauth.ConfigMapName}, Data: data}, metav1.CreateOptions{})
	} else if err == nil {
		cm.Data = data
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

// serviceAccountConfig makes a ServiceAccount with a ClusterRole of rules
// (and the named ClusterRoles) and returns a client config with a token
// of it.
func serviceAccountConfig(t *testing.T, s *testserver.Server, ns, name string, rules []rbacv1.PolicyRule, clusterRoles ...string) *rest.Config {
	t.Helper()
	ctx := context.Background()
	cs := s.Client
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	subject := rbacv1.Subject{Kind: "ServiceAccount", Namespace: ns, Name: name}
	if len(rules) > 0 {
		role := ns + ":" + name
		if _, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: role}, Rules: rules}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		clusterRoles = append(clusterRoles, role)
	}
	for _, r := range clusterRoles {
		bindClusterRole(t, cs, ns+":"+name+":"+strings.ReplaceAll(r, ":", "-"), r, subject)
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &rest.Config{Host: s.Config.Host, BearerToken: tr.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAData: s.Config.TLSClientConfig.CAData}, QPS: -1}
}

func bindClusterRole(t *testing.T, cs kubernetes.Interface, name, role string, subjects ...rbacv1.Subject) {
	t.Helper()
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(context.Background(), &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role}, Subjects: subjects}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func bindRole(t *testing.T, cs kubernetes.Interface, ns, name, role string, subjects ...rbacv1.Subject) {
	t.Helper()
	if _, err := cs.RbacV1().RoleBindings(ns).Create(context.Background(), &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role}, Subjects: subjects}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// call is a request to the extension server as the API server's proxy
// makes it: TLS verified against the registered caBundle for
// skiff-metrics.kube-system.svc, with an optional client certificate,
// headers and bearer token.
type call struct {
	cert   *tls.Certificate
	header map[string]string
	token  string
}

func (e *extEnv) do(t *testing.T, c call, path string) (int, []byte) {
	t.Helper()
	tc := &tls.Config{RootCAs: e.roots, ServerName: "skiff-metrics.kube-system.svc", MinVersion: tls.VersionTLS12}
	if c.cert != nil {
		tc.Certificates = []tls.Certificate{*c.cert}
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 20 * time.Second}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, e.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (e *extEnv) clientCert(t *testing.T, ca *pki.CA, cn string, orgs ...string) *tls.Certificate {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(cn, orgs, nil, nil, false, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &pair
}

func status(t *testing.T, b []byte) metav1.Status {
	t.Helper()
	var st metav1.Status
	if err := json.Unmarshal(b, &st); err != nil || st.Kind != "Status" {
		t.Fatalf("not a Status: %s", b)
	}
	return st
}

func grant(t *testing.T, cs kubernetes.Interface, name string, resources []string, subjects ...rbacv1.Subject) {
	t.Helper()
	if _, err := cs.RbacV1().ClusterRoles().Create(context.Background(), &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"metrics.k8s.io"}, Resources: resources, Verbs: []string{"get", "list"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bindClusterRole(t, cs, name, name, subjects...)
}

// TestMetricsExtensionAPIServer is issue #11's standalone add-on behind
// API aggregation: delegated authentication (front proxy, client
// certificates, TokenReview) and authorization (SubjectAccessReview)
// against a real API server, and the registration.
func TestMetricsExtensionAPIServer(t *testing.T) {
	e := startExtension(t)
	ctx := context.Background()
	admin := e.srv.Client
	proxy := e.clientCert(t, e.frontCA, frontProxyAllowed)
	nodesPath := "/apis/metrics.k8s.io/v1beta1/nodes"

	t.Run("health without credentials", func(t *testing.T) {
		for _, p := range []string{"/healthz", "/livez", "/readyz"} {
			if code, b := e.do(t, call{}, p); code != 200 {
				t.Errorf("%s: %d %s", p, code, b)
			}
		}
	})

	t.Run("front proxy user authorized by SubjectAccessReview", func(t *testing.T) {
		alice := call{cert: proxy, header: map[string]string{"X-Remote-User": "alice", "X-Remote-Group": "developers"}}
		code, b := e.do(t, alice, nodesPath)
		if code != http.StatusForbidden {
			t.Fatalf("alice before the grant: %d %s", code, b)
		}
		if st := status(t, b); st.Reason != metav1.StatusReasonForbidden ||
			!strings.Contains(st.Message, `User "alice" cannot list resource "nodes" in API group "metrics.k8s.io" at the cluster scope`) {
			t.Errorf("forbidden status: %+v", st)
		}
		grant(t, admin, "ext-test-alice", []string{"nodes"}, rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "alice"})
		var l metricsv1beta1.NodeMetricsList
		eventually(t, 20*time.Second, "alice allowed after the grant", func() error {
			code, b := e.do(t, alice, nodesPath)
			if code != 200 {
				return fmt.Errorf("%d %s", code, b)
			}
			return json.Unmarshal(b, &l)
		})
		var names []string
		for _, m := range l.Items {
			names = append(names, m.Name)
			if m.Usage.Cpu().IsZero() || m.Usage.Memory().IsZero() {
				t.Errorf("node %s: usage %v", m.Name, m.Usage)
			}
		}
		if l.Kind != "NodeMetricsList" || !slices.Equal(names, e.nodes) {
			t.Errorf("alice's list: %s %v, want %v", l.Kind, names, e.nodes)
		}
		var m metricsv1beta1.NodeMetrics
		if code, b := e.do(t, alice, nodesPath+"/"+e.nodes[1]); code != 200 || json.Unmarshal(b, &m) != nil || m.Name != e.nodes[1] || m.Kind != "NodeMetrics" {
			t.Errorf("get %s: %d %s", e.nodes[1], code, b)
		}
		// Only nodes were granted.
		if code, b := e.do(t, alice, "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods"); code != http.StatusForbidden ||
			!strings.Contains(status(t, b).Message, `cannot list resource "pods" in API group "metrics.k8s.io" in the namespace "default"`) {
			t.Errorf("alice pods: %d %s", code, b)
		}
	})

	t.Run("groups from the front proxy headers", func(t *testing.T) {
		grant(t, admin, "ext-test-readers", []string{"nodes"}, rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "metrics-readers"})
		bob := call{cert: proxy, header: map[string]string{"X-Remote-User": "bob", "X-Remote-Group": "metrics-readers"}}
		eventually(t, 20*time.Second, "bob allowed through his group", func() error {
			if code, b := e.do(t, bob, nodesPath); code != 200 {
				return fmt.Errorf("%d %s", code, b)
			}
			return nil
		})
		if code, b := e.do(t, call{cert: proxy, header: map[string]string{"X-Remote-User": "bob"}}, nodesPath); code != http.StatusForbidden {
			t.Errorf("bob without the group header: %d %s", code, b)
		}
	})

	t.Run("headers without the front proxy certificate are not trusted", func(t *testing.T) {
		code, b := e.do(t, call{header: map[string]string{"X-Remote-User": "alice", "X-Remote-Group": "system:masters"}}, nodesPath)
		if code != http.StatusUnauthorized {
			t.Fatalf("%d %s", code, b)
		}
		if st := status(t, b); st.Reason != metav1.StatusReasonUnauthorized || st.Code != 401 {
			t.Errorf("status %+v", st)
		}
	})

	t.Run("front proxy certificate with a name not allowed", func(t *testing.T) {
		other := e.clientCert(t, e.frontCA, "not-the-front-proxy")
		if code, b := e.do(t, call{cert: other, header: map[string]string{"X-Remote-User": "alice"}}, nodesPath); code != http.StatusUnauthorized {
			t.Errorf("%d %s", code, b)
		}
		// Nor is a certificate of another CA with the allowed name.
		otherCA, err := pki.LoadOrCreateCA(t.TempDir(), "other", "other-ca")
		if err != nil {
			t.Fatal(err)
		}
		if code, b := e.do(t, call{cert: e.clientCert(t, otherCA, frontProxyAllowed), header: map[string]string{"X-Remote-User": "alice"}}, nodesPath); code != http.StatusUnauthorized {
			t.Errorf("another CA: %d %s", code, b)
		}
	})

	t.Run("cluster client certificate", func(t *testing.T) {
		rc, err := e.srv.ComponentConfig("carol", []string{"metrics-readers"})
		if err != nil {
			t.Fatal(err)
		}
		pair, err := tls.LoadX509KeyPair(rc.TLSClientConfig.CertFile, rc.TLSClientConfig.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		// Headers beside a client certificate name nobody.
		carol := call{cert: &pair, header: map[string]string{"X-Remote-User": "alice"}}
		if code, b := e.do(t, carol, nodesPath); code != 200 {
			t.Errorf("carol (group metrics-readers): %d %s", code, b)
		}
		if code, b := e.do(t, carol, "/apis/metrics.k8s.io/v1beta1/pods"); code != http.StatusForbidden || !strings.Contains(string(b), `User \"carol\"`) {
			t.Errorf("carol pods: %d %s", code, b)
		}
	})

	t.Run("service account token and label selectors", func(t *testing.T) {
		ns := "ext-metrics"
		if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, p := range []*corev1.Pod{
			pod(ns, "web-1", e.nodes[0], map[string]string{"app": "web", "tier": "front"}, "app"),
			pod(ns, "web-2", e.nodes[1], map[string]string{"app": "web", "tier": "front"}, "app", "sidecar"),
			pod(ns, "db", e.nodes[1], map[string]string{"app": "db", "tier": "back"}, "db"),
		} {
			if _, err := admin.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		reader := serviceAccountConfig(t, e.srv, ns, "reader", []rbacv1.PolicyRule{{APIGroups: []string{"metrics.k8s.io"}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}}})
		tok := call{token: reader.BearerToken}
		podsPath := "/apis/metrics.k8s.io/v1beta1/namespaces/" + ns + "/pods"
		list := func(sel string) ([]string, error) {
			code, b := e.do(t, tok, podsPath+"?labelSelector="+sel)
			if code != 200 {
				return nil, fmt.Errorf("%d %s", code, b)
			}
			var l metricsv1beta1.PodMetricsList
			if err := json.Unmarshal(b, &l); err != nil {
				return nil, err
			}
			var names []string
			for _, m := range l.Items {
				names = append(names, m.Name)
			}
			return names, nil
		}
		eventually(t, 30*time.Second, "metrics of the three pods with the token", func() error {
			names, err := list("")
			if err != nil {
				return err
			}
			if len(names) != 3 {
				return fmt.Errorf("pods %v", names)
			}
			return nil
		})
		for sel, want := range map[string]string{
			"app%3Dweb":             "web-1,web-2",
			"tier%21%3Dfront":       "db",
			"app+in+(db,web),tier":  "db,web-1,web-2",
			"app%3Dweb,tier%3Dback": "",
			"app%3Dnone":            "",
		} {
			names, err := list(sel)
			if err != nil || strings.Join(names, ",") != want {
				t.Errorf("labelSelector %s: %v %v, want %s", sel, names, err, want)
			}
		}
		var pm metricsv1beta1.PodMetrics
		if code, b := e.do(t, tok, podsPath+"/web-2"); code != 200 || json.Unmarshal(b, &pm) != nil || len(pm.Containers) != 2 {
			t.Errorf("get web-2: %d %s", code, b)
		}
		if code, b := e.do(t, tok, nodesPath); code != http.StatusForbidden ||
			!strings.Contains(status(t, b).Message, `User "system:serviceaccount:`+ns+`:reader" cannot list resource "nodes"`) {
			t.Errorf("token on nodes: %d %s", code, b)
		}
		if code, b := e.do(t, call{token: "not-a-token"}, podsPath); code != http.StatusUnauthorized {
			t.Errorf("bad token: %d %s", code, b)
		}
	})

	t.Run("registration", func(t *testing.T) {
		port := int32(e.ext.Addr().Port)
		eventually(t, 20*time.Second, "the ExternalName Service", func() error {
			svc, err := admin.CoreV1().Services("kube-system").Get(ctx, "skiff-metrics", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if svc.Spec.Type != corev1.ServiceTypeExternalName || svc.Spec.ExternalName != "localhost" || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != port {
				return fmt.Errorf("service spec %+v", svc.Spec)
			}
			return nil
		})
		if !servesAPIServices(t, admin) {
			// The API server has no aggregation layer yet: registration
			// must keep retrying, not crash, and the error must be the
			// API server's answer for an unknown resource.
			_, err := e.srv.Dynamic.Resource(extserver.APIServicesGVR).Get(ctx, extserver.APIServiceName, metav1.GetOptions{})
			if !apierrors.IsNotFound(err) {
				t.Errorf("apiservices without aggregation: %v", err)
			}
			t.Logf("NOTE: this API server serves no apiregistration.k8s.io/v1 apiservices; the APIService half of registration is checked against a fake client only (extserver tests)")
			return
		}
		eventually(t, 30*time.Second, "the APIService", func() error {
			u, err := e.srv.Dynamic.Resource(extserver.APIServicesGVR).Get(ctx, extserver.APIServiceName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			var a apiregistrationv1.APIService
			if err := jsonRoundTrip(u.Object, &a); err != nil {
				return err
			}
			s := a.Spec
			if s.Service == nil || s.Service.Namespace != "kube-system" || s.Service.Name != "skiff-metrics" || s.Service.Port == nil || *s.Service.Port != port ||
				s.Group != "metrics.k8s.io" || s.Version != "v1beta1" || s.GroupPriorityMinimum != 100 || s.VersionPriority != 100 || string(s.CABundle) != string(e.ext.CABundle()) {
				return fmt.Errorf("apiservice spec %+v", s)
			}
			return nil
		})
	})
}

// TestMetricsThroughAggregation: kubectl's path, through the API server's
// aggregation layer to the standalone add-on, with the ConfigMap the API
// server published (its own front-proxy CA) put back at runtime.
func TestMetricsThroughAggregation(t *testing.T) {
	e := startExtension(t)
	ctx := context.Background()
	admin := e.srv.Client
	if !servesAPIServices(t, admin) || e.published[extauth.KeyRequestHeaderCA] == "" {
		t.Skip("the API server has no aggregation layer")
	}
	testProxy := e.clientCert(t, e.frontCA, frontProxyAllowed)
	writeAuthConfigMap(t, admin, e.published)
	eventually(t, 20*time.Second, "the test's front proxy CA no longer trusted", func() error {
		if code, b := e.do(t, call{cert: testProxy, header: map[string]string{"X-Remote-User": "system:admin", "X-Remote-Group": "system:masters"}}, "/apis/metrics.k8s.io/v1beta1/nodes"); code != http.StatusUnauthorized {
			return fmt.Errorf("%d %s", code, b)
		}
		return nil
	})
	eventually(t, 60*time.Second, "APIService Available", func() error {
		u, err := e.srv.Dynamic.Resource(extserver.APIServicesGVR).Get(ctx, extserver.APIServiceName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		var a apiregistrationv1.APIService
		if err := jsonRoundTrip(u.Object, &a); err != nil {
			return err
		}
		for _, c := range a.Status.Conditions {
			if c.Type == apiregistrationv1.Available {
				if c.Status != apiregistrationv1.ConditionTrue {
					return fmt.Errorf("available %s: %s %s", c.Status, c.Reason, c.Message)
				}
				return nil
			}
		}
		return fmt.Errorf("no Available condition: %+v", a.Status)
	})
	rest := admin.CoreV1().RESTClient()
	var l metricsv1beta1.NodeMetricsList
	eventually(t, 30*time.Second, "node metrics through the API server", func() error {
		if err := rest.Get().AbsPath("/apis/metrics.k8s.io/v1beta1/nodes").Do(ctx).Into(&l); err != nil {
			return err
		}
		if len(l.Items) != len(e.nodes) {
			return fmt.Errorf("%d node metrics", len(l.Items))
		}
		return nil
	})
	rl, err := admin.Discovery().ServerResourcesForGroupVersion("metrics.k8s.io/v1beta1")
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, r := range rl.APIResources {
		kinds = append(kinds, r.Name+"="+r.Kind)
	}
	slices.Sort(kinds)
	if strings.Join(kinds, ",") != "nodes=NodeMetrics,pods=PodMetrics" {
		t.Errorf("discovery through the aggregator: %v", kinds)
	}
	// A user the API server authorizes for nothing is refused there; one
	// it allows reaches the add-on, which authorizes the same user again.
	grant(t, admin, "agg-test-dave", []string{"nodes"}, rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "dave"})
	dave, err := e.srv.ComponentConfig("dave", nil)
	if err != nil {
		t.Fatal(err)
	}
	dc := kubernetes.NewForConfigOrDie(dave).CoreV1().RESTClient()
	eventually(t, 20*time.Second, "dave lists node metrics", func() error {
		return dc.Get().AbsPath("/apis/metrics.k8s.io/v1beta1/nodes").Do(ctx).Error()
	})
	if err := dc.Get().AbsPath("/apis/metrics.k8s.io/v1beta1/pods").Do(ctx).Error(); !apierrors.IsForbidden(err) {
		t.Errorf("dave lists pod metrics: %v", err)
	}
	if _, err := os.Stat("/usr/bin/kubectl"); err == nil {
		out, err := kubectl(t, e.srv, t.TempDir(), "top", "nodes")
		if err != nil || !strings.Contains(out, e.nodes[0]) || !strings.Contains(out, "CPU(cores)") {
			t.Errorf("kubectl top nodes: %v\n%s", err, out)
		}
	}
}

func servesAPIServices(t *testing.T, cs kubernetes.Interface) bool {
	t.Helper()
	rl, err := cs.Discovery().ServerResourcesForGroupVersion("apiregistration.k8s.io/v1")
	if err != nil {
		return false
	}
	for _, r := range rl.APIResources {
		if r.Name == "apiservices" {
			return true
		}
	}
	return false
}

func jsonRoundTrip(in any, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}
