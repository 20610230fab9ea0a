package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	apiregv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	"k8s.io/utils/ptr"
)

// extension is a minimal extension API server for example.skiff.dev/v1
// (widgets): it accepts identity headers only with a client certificate
// from the front-proxy CA of the ConfigMap, and records what it saw.
type extension struct {
	srv   *httptest.Server
	caPEM []byte

	mu       sync.Mutex
	front    *x509.CertPool
	requests []seen
	release  chan struct{}
}

type seen struct {
	path, user, auth string
	groups           []string
	frontProxy       bool
}

func newExtension(t *testing.T) *extension {
	t.Helper()
	cert, err := pki.SelfSigned("widgets", []string{"widgets.default.svc", "widgets-eps.default.svc"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e := &extension{caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), release: make(chan struct{})}
	e.srv = httptest.NewUnstartedServer(http.HandlerFunc(e.serve))
	e.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert}
	e.srv.StartTLS()
	t.Cleanup(func() {
		close(e.release)
		e.srv.Close()
	})
	return e
}

func (e *extension) serve(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	s := seen{path: r.URL.Path, auth: r.Header.Get("Authorization")}
	if len(r.TLS.PeerCertificates) > 0 && e.front != nil {
		c := r.TLS.PeerCertificates[0]
		_, err := c.Verify(x509.VerifyOptions{Roots: e.front, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		s.frontProxy = err == nil && c.Subject.CommonName == "front-proxy-client"
	}
	if s.frontProxy {
		s.user, s.groups = r.Header.Get("X-Remote-User"), r.Header.Values("X-Remote-Group")
	}
	e.requests = append(e.requests, s)
	e.mu.Unlock()
	if !s.frontProxy {
		http.Error(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","code":401,"reason":"Unauthorized"}`, http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch {
	case strings.HasPrefix(r.URL.Path, "/apis/example.skiff.dev/") && strings.Count(r.URL.Path, "/") == 3:
		_ = json.NewEncoder(w).Encode(metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: strings.TrimPrefix(r.URL.Path, "/apis/"),
			APIResources: []metav1.APIResource{{Name: "widgets", SingularName: "widget", Namespaced: true, Kind: "Widget", Verbs: []string{"get", "list", "watch"}, ShortNames: []string{"wd"}}}})
	case r.URL.Query().Get("watch") == "true" || r.URL.Query().Get("watch") == "1":
		_, _ = io.WriteString(w, `{"type":"ADDED","object":{"kind":"Widget","apiVersion":"example.skiff.dev/v1","metadata":{"name":"w1","namespace":"default","resourceVersion":"1"}}}`+"\n")
		w.(http.Flusher).Flush()
		select {
		case <-e.release:
		case <-r.Context().Done():
		}
	case strings.HasSuffix(r.URL.Path, "/widgets"):
		_, _ = io.WriteString(w, `{"kind":"WidgetList","apiVersion":"example.skiff.dev/v1","metadata":{"resourceVersion":"1"},"items":[]}`)
	default:
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","code":404,"reason":"NotFound"}`)
	}
}

func (e *extension) last(path string) (seen, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	var out seen
	for _, s := range e.requests {
		if s.path == path {
			out, n = s, n+1
		}
	}
	return out, n
}

func apiService(ts *testserver.Server, t *testing.T, name string) *apiregv1.APIService {
	t.Helper()
	u, err := ts.Dynamic.Resource(apiregv1.SchemeGroupVersion.WithResource("apiservices")).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get apiservice %s: %v", name, err)
	}
	a := &apiregv1.APIService{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, a); err != nil {
		t.Fatal(err)
	}
	return a
}

func availability(a *apiregv1.APIService) (apiregv1.ConditionStatus, string) {
	for _, c := range a.Status.Conditions {
		if c.Type == apiregv1.Available {
			return c.Status, c.Reason
		}
	}
	return "", ""
}

func waitAvailability(t *testing.T, ts *testserver.Server, name string, want apiregv1.ConditionStatus, reason string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, r := availability(apiService(ts, t, name))
		if st == want && (reason == "" || r == reason) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("APIService %s: Available=%s (%s), want %s (%s)", name, st, r, want, reason)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAggregation registers an extension API server behind an
// ExternalName service and checks what upstream's aggregator does: the
// front-proxy CA published for extension servers, the availability check,
// discovery (legacy and aggregated, through kubectl), proxying with the
// caller's identity in headers and none of its credentials (spoofed
// headers dropped), authorization before proxying, watch streaming, and a
// 503 with Available=False when the server goes away.
func TestAggregation(t *testing.T) {
	ts := testserver.Start(t, func(c *server.Config) { c.AggregatorCheckInterval = 200 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The published trust: the cluster CA for client certificates and a
	// front-proxy CA of its own with the allowed name and header names.
	cm, err := ts.Client.CoreV1().ConfigMaps("kube-system").Get(ctx, server.AuthConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("%s: %v", server.AuthConfigMap, err)
	}
	if cm.Data["requestheader-allowed-names"] != `["front-proxy-client"]` || cm.Data["requestheader-username-headers"] != `["X-Remote-User"]` ||
		cm.Data["requestheader-group-headers"] != `["X-Remote-Group"]` || cm.Data["requestheader-extra-headers-prefix"] != `["X-Remote-Extra-"]` {
		t.Errorf("requestheader settings: %v", cm.Data)
	}
	if cm.Data["client-ca-file"] == "" || cm.Data["requestheader-client-ca-file"] == "" || cm.Data["client-ca-file"] == cm.Data["requestheader-client-ca-file"] {
		t.Fatalf("CAs: client-ca-file and requestheader-client-ca-file must be set and differ")
	}
	ext := newExtension(t)
	front := x509.NewCertPool()
	if !front.AppendCertsFromPEM([]byte(cm.Data["requestheader-client-ca-file"])) {
		t.Fatal("requestheader-client-ca-file holds no certificate")
	}
	ext.mu.Lock()
	ext.front = front
	ext.mu.Unlock()

	_, port, _ := net.SplitHostPort(strings.TrimPrefix(ext.srv.URL, "https://"))
	var p int32
	fmt.Sscan(port, &p)
	if _, err := ts.Client.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "widgets"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "127.0.0.1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	api := &apiregv1.APIService{TypeMeta: metav1.TypeMeta{Kind: "APIService", APIVersion: "apiregistration.k8s.io/v1"}, ObjectMeta: metav1.ObjectMeta{Name: "v1.example.skiff.dev"},
		Spec: apiregv1.APIServiceSpec{Group: "example.skiff.dev", Version: "v1", GroupPriorityMinimum: 1000, VersionPriority: 15, CABundle: ext.caPEM,
			Service: &apiregv1.ServiceReference{Namespace: "default", Name: "widgets", Port: &p}}}
	obj, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(api)
	apis := ts.Dynamic.Resource(apiregv1.SchemeGroupVersion.WithResource("apiservices"))
	if _, err := apis.Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create APIService: %v", err)
	}
	// Validation as upstream: the name must be <version>.<group>.
	bad := obj
	bad = runtime.DeepCopyJSON(bad)
	bad["metadata"] = map[string]any{"name": "wrong.name"}
	if _, err := apis.Create(ctx, &unstructured.Unstructured{Object: bad}, metav1.CreateOptions{}); !apierrors.IsInvalid(err) {
		t.Errorf("APIService named otherwise than <version>.<group>: %v, want Invalid", err)
	}
	waitAvailability(t, ts, "v1.example.skiff.dev", apiregv1.ConditionTrue, "Passed")
	if s, _ := ext.last("/apis/example.skiff.dev/v1"); s.user != "system:kube-aggregator" {
		t.Errorf("availability check as %q, want system:kube-aggregator", s.user)
	}

	kubectl := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", ts.Kubeconfig()}, args...)...).CombinedOutput()
		return string(out), err
	}
	out, err := kubectl("get", "apiservices")
	if err != nil || !strings.Contains(out, "v1.example.skiff.dev") || !strings.Contains(out, "default/widgets") || !strings.Contains(out, "True") {
		t.Errorf("kubectl get apiservices: %v\n%s", err, out)
	}
	// Discovery through kubectl (aggregated discovery), then a list that
	// is proxied.
	out, err = kubectl("api-resources", "--api-group", "example.skiff.dev")
	if err != nil || !strings.Contains(out, "widgets") || !strings.Contains(out, "wd") {
		t.Errorf("kubectl api-resources: %v\n%s", err, out)
	}
	out, err = kubectl("get", "wd")
	if err != nil || !strings.Contains(out, "No resources found") {
		t.Errorf("kubectl get wd: %v\n%s", err, out)
	}
	// Legacy discovery lists the group too.
	groups, err := ts.Client.Discovery().ServerGroups()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, g := range groups.Groups {
		found = found || (g.Name == "example.skiff.dev" && g.PreferredVersion.Version == "v1")
	}
	if !found {
		t.Errorf("/apis lacks example.skiff.dev")
	}

	// Endpoint routing: a service without a selector whose EndpointSlice
	// names the extension server. Missing endpoints first.
	if _, err := ts.Client.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "widgets-eps"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "https", Port: 443}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	alpha := api.DeepCopy()
	alpha.Name, alpha.Spec.Version, alpha.Spec.VersionPriority = "v1alpha1.example.skiff.dev", "v1alpha1", 10
	alpha.Spec.Service = &apiregv1.ServiceReference{Namespace: "default", Name: "widgets-eps"}
	obj, _ = runtime.DefaultUnstructuredConverter.ToUnstructured(alpha)
	if _, err := apis.Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create APIService: %v", err)
	}
	waitAvailability(t, ts, "v1alpha1.example.skiff.dev", apiregv1.ConditionFalse, "MissingEndpoints")
	if a := apiService(ts, t, "v1alpha1.example.skiff.dev"); a.Spec.Service.Port == nil || *a.Spec.Service.Port != 443 {
		t.Errorf("service port not defaulted to 443: %v", a.Spec.Service.Port)
	}
	if _, err := ts.Client.DiscoveryV1().EndpointSlices("default").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "widgets-eps-1", Labels: map[string]string{discoveryv1.LabelServiceName: "widgets-eps"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"127.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: &p}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAvailability(t, ts, "v1alpha1.example.skiff.dev", apiregv1.ConditionTrue, "Passed")
	alphaPath := "/apis/example.skiff.dev/v1alpha1/namespaces/default/widgets"
	if err := ts.Client.CoreV1().RESTClient().Get().AbsPath(alphaPath).Do(ctx).Error(); err != nil {
		t.Fatalf("list through endpoint routing: %v", err)
	}
	if s, n := ext.last(alphaPath); n != 1 || s.user != "system:admin" {
		t.Errorf("backend saw %+v (%d requests) through endpoint routing", s, n)
	}
	// Versions by versionPriority: v1 (15) before v1alpha1 (10).
	groups, err = ts.Client.Discovery().ServerGroups()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups.Groups {
		if g.Name == "example.skiff.dev" && (len(g.Versions) != 2 || g.PreferredVersion.Version != "v1") {
			t.Errorf("example.skiff.dev versions %v, preferred %v", g.Versions, g.PreferredVersion)
		}
	}

	// The caller's identity goes in headers; its credentials and any
	// identity headers it sent itself do not.
	listPath := "/apis/example.skiff.dev/v1/namespaces/default/widgets"
	res := ts.Client.CoreV1().RESTClient().Get().AbsPath(listPath).SetHeader("X-Remote-User", "mallory").SetHeader("X-Remote-Group", "system:masters").Do(ctx)
	if err := res.Error(); err != nil {
		t.Fatalf("proxied list: %v", err)
	}
	s, n := ext.last(listPath)
	if n == 0 || !s.frontProxy || s.user != "system:admin" || s.auth != "" || !slices.Contains(s.groups, "system:masters") || slices.Contains(s.groups, "mallory") {
		t.Errorf("backend saw %+v (%d requests), want system:admin via the front proxy without Authorization", s, n)
	}

	// Authorization happens before the proxy: bob may not list widgets.
	bobCfg := rest.CopyConfig(ts.Config)
	bobCfg.Impersonate = rest.ImpersonationConfig{UserName: "bob", Groups: []string{"system:authenticated"}}
	bob := kubernetes.NewForConfigOrDie(bobCfg)
	_, before := ext.last(listPath)
	err = bob.CoreV1().RESTClient().Get().AbsPath(listPath).Do(ctx).Error()
	if !apierrors.IsForbidden(err) {
		t.Errorf("bob's list: %v, want Forbidden", err)
	}
	if _, after := ext.last(listPath); after != before {
		t.Errorf("a forbidden request reached the extension server")
	}
	if _, err := ts.Client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "widget-reader"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"example.skiff.dev"}, Resources: []string{"widgets"}, Verbs: []string{"list", "watch"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "bob-widgets"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "widget-reader"},
		Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "bob"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		err = bob.CoreV1().RESTClient().Get().AbsPath(listPath).SetHeader("X-Remote-Group", "system:masters").Do(ctx).Error()
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("bob's list after the grant: %v", err)
	}
	if s, _ := ext.last(listPath); s.user != "bob" || slices.Contains(s.groups, "system:masters") || !slices.Contains(s.groups, "system:authenticated") {
		t.Errorf("backend saw %+v, want bob in system:authenticated only (his own X-Remote-Group dropped)", s)
	}

	// A watch streams: the first event arrives while the backend holds
	// the response open.
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	widgets := schema.GroupVersionResource{Group: "example.skiff.dev", Version: "v1", Resource: "widgets"}
	w, err := ts.Dynamic.Resource(widgets).Namespace("default").Watch(wctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("proxied watch: %v", err)
	}
	select {
	case ev, ok := <-w.ResultChan():
		if !ok {
			t.Fatal("watch closed before its first event")
		}
		if u, _ := ev.Object.(*unstructured.Unstructured); ev.Type != "ADDED" || u == nil || u.GetName() != "w1" {
			t.Errorf("watch event %v %v", ev.Type, ev.Object)
		}
	case <-wctx.Done():
		t.Fatal("no watch event through the proxy within 10 s")
	}
	w.Stop()
	wcancel()

	// The server goes away: 503, and the APIService turns unavailable.
	ext.srv.Listener.Close()
	ext.srv.CloseClientConnections()
	waitAvailability(t, ts, "v1.example.skiff.dev", apiregv1.ConditionFalse, "FailedDiscoveryCheck")
	err = ts.Client.CoreV1().RESTClient().Get().AbsPath(listPath).Do(ctx).Error()
	if !apierrors.IsServiceUnavailable(err) {
		t.Errorf("list with the extension server gone: %v, want 503", err)
	}

	// Deleting the APIService takes the group out of discovery.
	if err := apis.Delete(ctx, "v1.example.skiff.dev", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, err := ts.Client.Discovery().ServerResourcesForGroupVersion("example.skiff.dev/v1")
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("example.skiff.dev/v1 after deleting its APIService: %v, want NotFound", err)
		}
	}
}
