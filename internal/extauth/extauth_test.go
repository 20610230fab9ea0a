package extauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/pki"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

type testCA struct {
	ca  *pki.CA
	pem string
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	ca, err := pki.LoadOrCreateCA(t.TempDir(), name, name)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{ca: ca, pem: string(ca.CertPEM)}
}

// client issues a client certificate and returns it parsed and as a
// tls.Certificate.
func (c *testCA) client(t *testing.T, cn string, orgs ...string) (*x509.Certificate, tls.Certificate) {
	t.Helper()
	certPEM, keyPEM, err := c.ca.Issue(cn, orgs, nil, nil, false, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert, pair
}

// fakeAPI answers TokenReviews (tokens maps a token to its user) and
// SubjectAccessReviews (allow decides), counting them.
type fakeAPI struct {
	*fake.Clientset
	tokens       map[string]authenticationv1.UserInfo
	allow        func(authorizationv1.SubjectAccessReviewSpec) (bool, string)
	tokenReviews atomic.Int32
	sars         atomic.Int32
	mu           sync.Mutex
	lastSAR      authorizationv1.SubjectAccessReviewSpec
}

func newFakeAPI(objs ...runtime.Object) *fakeAPI {
	f := &fakeAPI{Clientset: fake.NewClientset(objs...), tokens: map[string]authenticationv1.UserInfo{}}
	f.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		f.tokenReviews.Add(1)
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview).DeepCopy()
		if u, ok := f.tokens[tr.Spec.Token]; ok {
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: u}
		}
		return true, tr, nil
	})
	f.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		f.sars.Add(1)
		sar := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview).DeepCopy()
		f.mu.Lock()
		f.lastSAR = sar.Spec
		f.mu.Unlock()
		if f.allow != nil {
			sar.Status.Allowed, sar.Status.Reason = f.allow(sar.Spec)
		}
		return true, sar, nil
	})
	return f
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func configMapData(clientCA, frontProxyCA *testCA, allowed ...string) map[string]string {
	names, _ := json.Marshal(allowed)
	if allowed == nil {
		names = []byte("[]")
	}
	d := map[string]string{
		KeyAllowedNames:        string(names),
		KeyUsernameHeaders:     `["X-Remote-User"]`,
		KeyGroupHeaders:        `["X-Remote-Group"]`,
		KeyExtraHeaderPrefixes: `["X-Remote-Extra-"]`,
	}
	if clientCA != nil {
		d[KeyClientCA] = clientCA.pem
	}
	if frontProxyCA != nil {
		d[KeyRequestHeaderCA] = frontProxyCA.pem
	}
	return d
}

func TestParseConfigMap(t *testing.T) {
	ca := newCA(t, "client-ca")
	c, err := ParseConfigMap(map[string]string{
		KeyClientCA:            ca.pem,
		KeyAllowedNames:        `["front-proxy-client"]`,
		KeyUsernameHeaders:     `[" X-Remote-User "]`,
		KeyGroupHeaders:        `["X-Remote-Group"]`,
		KeyExtraHeaderPrefixes: `["X-Remote-Extra-"]`,
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.ClientCA == nil || c.RequestHeaderCA != nil || !reflect.DeepEqual(c.AllowedNames, []string{"front-proxy-client"}) ||
		!reflect.DeepEqual(c.UsernameHeaders, []string{"X-Remote-User"}) || c.UIDHeaders != nil {
		t.Errorf("parsed %+v", c)
	}
	if c, err := ParseConfigMap(nil); err != nil || c.ClientCA != nil || c.UsernameHeaders != nil {
		t.Errorf("empty: %+v %v", c, err)
	}
	for name, data := range map[string]map[string]string{
		"bad PEM":      {KeyClientCA: "not a certificate"},
		"bad ca PEM":   {KeyRequestHeaderCA: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
		"not JSON":     {KeyUsernameHeaders: "X-Remote-User"},
		"not strings":  {KeyGroupHeaders: `[1]`},
		"empty header": {KeyExtraHeaderPrefixes: `["X-Remote-Extra-", " "]`},
		"object":       {KeyAllowedNames: `{"a":"b"}`},
	} {
		if _, err := ParseConfigMap(data); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

func request(cert *x509.Certificate, hdr map[string][]string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/apis/metrics.k8s.io/v1beta1/nodes", nil)
	for k, v := range hdr {
		r.Header[http.CanonicalHeaderKey(k)] = v
	}
	if cert != nil {
		r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
	} else {
		r.TLS = &tls.ConnectionState{}
	}
	return r
}

func TestAuthenticate(t *testing.T) {
	clientCA, frontCA, otherCA := newCA(t, "client-ca"), newCA(t, "front-proxy-ca"), newCA(t, "other-ca")
	api := newFakeAPI()
	api.tokens["good"] = authenticationv1.UserInfo{Username: "system:serviceaccount:ns:sa", UID: "u1", Groups: []string{"system:serviceaccounts", AllAuthenticated}, Extra: map[string]authenticationv1.ExtraValue{"k": {"v"}}}
	clk := &clock{t: time.Unix(1e9, 0)}
	d, err := New(Options{Client: api, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfigMap(configMapData(clientCA, frontCA, "front-proxy-client"))
	if err != nil {
		t.Fatal(err)
	}
	d.SetConfig(cfg)
	proxy, _ := frontCA.client(t, "front-proxy-client")
	badCN, _ := frontCA.client(t, "someone-else")
	clientCert, _ := clientCA.client(t, "carol", "dev", "ops")
	stranger, _ := otherCA.client(t, "mallory", "system:masters")
	headers := map[string][]string{
		"X-Remote-User": {"alice"}, "X-Remote-Group": {"g1", "", "g2"},
		"X-Remote-Extra-Scopes": {"a", "b"}, "X-Remote-Extra-Acme.com%2fProject": {"p"}, "Other": {"kept"},
	}

	t.Run("front proxy", func(t *testing.T) {
		r := request(proxy, headers)
		u, err := d.Authenticate(r)
		if err != nil {
			t.Fatal(err)
		}
		want := &User{Name: "alice", Groups: []string{"g1", "g2", AllAuthenticated}, Extra: map[string][]string{"scopes": {"a", "b"}, "acme.com/project": {"p"}}}
		if !reflect.DeepEqual(u, want) {
			t.Errorf("user %+v, want %+v", u, want)
		}
		for _, h := range []string{"X-Remote-User", "X-Remote-Group", "X-Remote-Extra-Scopes"} {
			if r.Header.Get(h) != "" {
				t.Errorf("header %s left in the request", h)
			}
		}
		if r.Header.Get("Other") != "kept" {
			t.Error("an unrelated header was removed")
		}
	})
	t.Run("front proxy without a user header falls through", func(t *testing.T) {
		if u, err := d.Authenticate(request(proxy, map[string][]string{"X-Remote-Group": {"system:masters"}})); err == nil {
			t.Errorf("authenticated as %+v", u)
		}
	})
	t.Run("front proxy CN not allowed", func(t *testing.T) {
		if u, err := d.Authenticate(request(badCN, headers)); err == nil || !strings.Contains(err.Error(), "not in the allowed list") {
			t.Errorf("authenticated as %+v (%v)", u, err)
		}
	})
	t.Run("headers without a front proxy certificate", func(t *testing.T) {
		if u, err := d.Authenticate(request(nil, headers)); err == nil {
			t.Errorf("headers trusted: %+v", u)
		}
	})
	t.Run("client certificate ignores headers", func(t *testing.T) {
		u, err := d.Authenticate(request(clientCert, headers))
		if err != nil {
			t.Fatal(err)
		}
		if want := (&User{Name: "carol", Groups: []string{"dev", "ops", AllAuthenticated}}); !reflect.DeepEqual(u, want) {
			t.Errorf("user %+v, want %+v", u, want)
		}
	})
	t.Run("certificate of another CA", func(t *testing.T) {
		if u, err := d.Authenticate(request(stranger, nil)); err == nil {
			t.Errorf("authenticated as %+v", u)
		}
	})
	t.Run("bearer token", func(t *testing.T) {
		r := request(nil, map[string][]string{"Authorization": {"bearer good"}})
		u, err := d.Authenticate(r)
		if err != nil {
			t.Fatal(err)
		}
		want := &User{Name: "system:serviceaccount:ns:sa", UID: "u1", Groups: []string{"system:serviceaccounts", AllAuthenticated}, Extra: map[string][]string{"k": {"v"}}}
		if !reflect.DeepEqual(u, want) {
			t.Errorf("user %+v, want %+v", u, want)
		}
		if r.Header.Get("Authorization") != "" {
			t.Error("Authorization header left in the request")
		}
		n := api.tokenReviews.Load()
		clk.add(DefaultTokenSuccessTTL - time.Second)
		if _, err := d.Authenticate(request(nil, map[string][]string{"Authorization": {"Bearer good"}})); err != nil || api.tokenReviews.Load() != n {
			t.Errorf("cached answer not used: %v, %d reviews", err, api.tokenReviews.Load()-n)
		}
		clk.add(2 * time.Second)
		if _, err := d.Authenticate(request(nil, map[string][]string{"Authorization": {"Bearer good"}})); err != nil || api.tokenReviews.Load() != n+1 {
			t.Errorf("expired answer used: %v", err)
		}
	})
	t.Run("rejected token is cached briefly", func(t *testing.T) {
		n := api.tokenReviews.Load()
		for range 3 {
			if _, err := d.Authenticate(request(nil, map[string][]string{"Authorization": {"Bearer bad"}})); err == nil {
				t.Fatal("bad token authenticated")
			}
		}
		if got := api.tokenReviews.Load() - n; got != 1 {
			t.Errorf("%d reviews, want 1", got)
		}
		clk.add(DefaultTokenFailureTTL)
		_, _ = d.Authenticate(request(nil, map[string][]string{"Authorization": {"Bearer bad"}}))
		if got := api.tokenReviews.Load() - n; got != 2 {
			t.Errorf("%d reviews after the failure TTL, want 2", got)
		}
	})
	t.Run("no credentials", func(t *testing.T) {
		if _, err := d.Authenticate(request(nil, map[string][]string{"Authorization": {"Basic dTpw"}})); err == nil {
			t.Error("authenticated")
		}
	})
	t.Run("no configuration trusts no certificate", func(t *testing.T) {
		d.SetConfig(nil)
		defer d.SetConfig(cfg)
		if u, err := d.Authenticate(request(proxy, headers)); err == nil {
			t.Errorf("authenticated as %+v", u)
		}
		if u, err := d.Authenticate(request(clientCert, nil)); err == nil {
			t.Errorf("authenticated as %+v", u)
		}
	})
}

func TestRequestAttributes(t *testing.T) {
	for _, tc := range []struct {
		method, url string
		want        Attributes
	}{
		{"GET", "/apis/metrics.k8s.io/v1beta1/nodes", Attributes{IsResourceRequest: true, Verb: "list", APIGroup: "metrics.k8s.io", APIVersion: "v1beta1", Resource: "nodes"}},
		{"GET", "/apis/metrics.k8s.io/v1beta1/nodes/n1", Attributes{IsResourceRequest: true, Verb: "get", APIGroup: "metrics.k8s.io", APIVersion: "v1beta1", Resource: "nodes", Name: "n1"}},
		{"HEAD", "/apis/metrics.k8s.io/v1beta1/namespaces/ns/pods/p", Attributes{IsResourceRequest: true, Verb: "get", APIGroup: "metrics.k8s.io", APIVersion: "v1beta1", Namespace: "ns", Resource: "pods", Name: "p"}},
		{"GET", "/apis/metrics.k8s.io/v1beta1/namespaces/ns/pods?watch=true", Attributes{IsResourceRequest: true, Verb: "watch", APIGroup: "metrics.k8s.io", APIVersion: "v1beta1", Namespace: "ns", Resource: "pods"}},
		{"GET", "/apis/metrics.k8s.io/v1beta1/watch/namespaces/ns/pods", Attributes{IsResourceRequest: true, Verb: "watch", APIGroup: "metrics.k8s.io", APIVersion: "v1beta1", Namespace: "ns", Resource: "pods"}},
		{"GET", "/apis/metrics.k8s.io/v1beta1/pods?fieldSelector=metadata.name%3Dp", Attributes{IsResourceRequest: true, Verb: "list", APIGroup: "metrics.k8s.io", APIVersion: "v1beta1", Resource: "pods", Name: "p"}},
		{"DELETE", "/apis/metrics.k8s.io/v1beta1/nodes", Attributes{IsResourceRequest: true, Verb: "deletecollection", APIGroup: "metrics.k8s.io", APIVersion: "v1beta1", Resource: "nodes"}},
		{"POST", "/api/v1/namespaces/ns/pods/p/exec", Attributes{IsResourceRequest: true, Verb: "create", APIVersion: "v1", Namespace: "ns", Resource: "pods", Subresource: "exec", Name: "p"}},
		{"GET", "/api/v1/namespaces/ns", Attributes{IsResourceRequest: true, Verb: "get", APIVersion: "v1", Namespace: "ns", Resource: "namespaces", Name: "ns"}},
		{"PUT", "/api/v1/namespaces/ns/finalize", Attributes{IsResourceRequest: true, Verb: "update", APIVersion: "v1", Namespace: "ns", Resource: "namespaces", Name: "ns", Subresource: "finalize"}},
		{"GET", "/api/v1/proxy/namespaces/ns/services/s/a/b", Attributes{IsResourceRequest: true, Verb: "proxy", APIVersion: "v1", Namespace: "ns", Resource: "services", Name: "s"}},
		{"GET", "/apis/metrics.k8s.io/v1beta1", Attributes{Verb: "get"}},
		{"GET", "/apis/metrics.k8s.io", Attributes{Verb: "get"}},
		{"GET", "/apis", Attributes{Verb: "get"}},
		{"POST", "/healthz", Attributes{Verb: "post"}},
		{"GET", "/openapi/v2", Attributes{Verb: "get"}},
	} {
		r := httptest.NewRequest(tc.method, tc.url, nil)
		tc.want.Path = r.URL.Path
		if got := RequestAttributes(r); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s %s = %+v, want %+v", tc.method, tc.url, got, tc.want)
		}
	}
}

func TestAuthorize(t *testing.T) {
	api := newFakeAPI()
	api.allow = func(s authorizationv1.SubjectAccessReviewSpec) (bool, string) {
		if s.User == "alice" && s.ResourceAttributes != nil && s.ResourceAttributes.Resource == "nodes" {
			return true, ""
		}
		return false, "no RBAC policy matched"
	}
	clk := &clock{t: time.Unix(1e9, 0)}
	d, err := New(Options{Client: api, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	alice := &User{Name: "alice", UID: "1", Groups: []string{"g", AllAuthenticated}, Extra: map[string][]string{"scopes": {"x"}}}
	nodes := RequestAttributes(httptest.NewRequest("GET", "/apis/metrics.k8s.io/v1beta1/nodes/n1", nil))
	ok, _, err := d.Authorize(ctx, alice, nodes)
	if err != nil || !ok {
		t.Fatalf("alice get nodes: %v %v", ok, err)
	}
	want := authorizationv1.SubjectAccessReviewSpec{User: "alice", UID: "1", Groups: []string{"g", AllAuthenticated},
		Extra:              map[string]authorizationv1.ExtraValue{"scopes": {"x"}},
		ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "get", Group: "metrics.k8s.io", Version: "v1beta1", Resource: "nodes", Name: "n1"}}
	api.mu.Lock()
	if !reflect.DeepEqual(api.lastSAR, want) {
		t.Errorf("SAR spec %+v, want %+v", api.lastSAR, want)
	}
	api.mu.Unlock()
	clk.add(DefaultAllowedTTL - time.Second)
	if ok, _, _ := d.Authorize(ctx, alice, nodes); !ok || api.sars.Load() != 1 {
		t.Errorf("cached allow not used: %d reviews", api.sars.Load())
	}
	clk.add(time.Second)
	if ok, _, _ := d.Authorize(ctx, alice, nodes); !ok || api.sars.Load() != 2 {
		t.Errorf("expired allow used: %d reviews", api.sars.Load())
	}

	pods := RequestAttributes(httptest.NewRequest("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/ns/pods", nil))
	ok, reason, err := d.Authorize(ctx, alice, pods)
	if err != nil || ok || reason != "no RBAC policy matched" {
		t.Fatalf("alice list pods: %v %q %v", ok, reason, err)
	}
	clk.add(DefaultDeniedTTL - time.Second)
	_, _, _ = d.Authorize(ctx, alice, pods)
	if api.sars.Load() != 3 {
		t.Errorf("cached deny not used: %d reviews", api.sars.Load())
	}
	clk.add(time.Second)
	_, _, _ = d.Authorize(ctx, alice, pods)
	if api.sars.Load() != 4 {
		t.Errorf("expired deny used: %d reviews", api.sars.Load())
	}

	path := RequestAttributes(httptest.NewRequest("POST", "/openapi/v2", nil))
	if ok, _, _ := d.Authorize(ctx, alice, path); ok {
		t.Error("path allowed")
	}
	api.mu.Lock()
	if na := api.lastSAR.NonResourceAttributes; na == nil || na.Path != "/openapi/v2" || na.Verb != "post" || api.lastSAR.ResourceAttributes != nil {
		t.Errorf("non-resource SAR %+v", api.lastSAR)
	}
	api.mu.Unlock()

	for _, tc := range []struct {
		a    Attributes
		want string
	}{
		{pods, `pods.metrics.k8s.io is forbidden: User "alice" cannot list resource "pods" in API group "metrics.k8s.io" in the namespace "ns": why`},
		{nodes, `nodes.metrics.k8s.io "n1" is forbidden: User "alice" cannot get resource "nodes" in API group "metrics.k8s.io" at the cluster scope: why`},
		{path, `forbidden: User "alice" cannot post path "/openapi/v2": why`},
	} {
		if got := Forbidden(alice, tc.a, "why").Error(); got != tc.want {
			t.Errorf("forbidden message %q, want %q", got, tc.want)
		}
	}
}

// TestHandler serves over TLS with requested client certificates and a
// ConfigMap that changes at runtime.
func TestHandler(t *testing.T) {
	clientCA, frontCA := newCA(t, "client-ca"), newCA(t, "front-proxy-ca")
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ConfigMapNamespace, Name: ConfigMapName}, Data: configMapData(clientCA, nil)}
	api := newFakeAPI(cm)
	api.allow = func(s authorizationv1.SubjectAccessReviewSpec) (bool, string) {
		return s.User == "alice" || s.User == "carol", ""
	}
	d, err := New(Options{Client: api, AlwaysAllowPaths: []string{"/healthz"}, Logger: nil})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(d.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, ok := UserFrom(r.Context()); ok {
			_, _ = io.WriteString(w, "hello "+u.Name)
		}
	})))
	serving, err := pki.SelfSigned("test", []string{"localhost"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = ServerTLSConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &serving, nil })
	srv.StartTLS()
	defer srv.Close()
	_, proxyPair := frontCA.client(t, "front-proxy-client")
	_, carolPair := clientCA.client(t, "carol")
	call := func(pair *tls.Certificate, path string, hdr map[string]string) (int, string) {
		t.Helper()
		tc := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // test server
		if pair != nil {
			tc.Certificates = []tls.Certificate{*pair}
		}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 10 * time.Second}
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	alice := map[string]string{"X-Remote-User": "alice"}

	if code, body := call(nil, "/healthz", nil); code != 200 {
		t.Errorf("healthz: %d %s", code, body)
	}
	code, body := call(nil, "/apis/metrics.k8s.io/v1beta1/nodes", nil)
	var st metav1.Status
	if code != 401 || json.Unmarshal([]byte(body), &st) != nil || st.Kind != "Status" || st.Reason != metav1.StatusReasonUnauthorized || st.Code != 401 {
		t.Errorf("no credentials: %d %s", code, body)
	}
	if code, body := call(&carolPair, "/x", nil); code != 200 || body != "hello carol" {
		t.Errorf("client certificate: %d %s", code, body)
	}
	// No front proxy CA yet: the headers are not trusted.
	if code, body := call(&proxyPair, "/x", alice); code != 401 {
		t.Errorf("front proxy before its CA is published: %d %s", code, body)
	}
	cm.Data = configMapData(clientCA, frontCA)
	if _, err := api.CoreV1().ConfigMaps(ConfigMapNamespace).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for d.Config().RequestHeaderCA == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if code, body := call(&proxyPair, "/x", alice); code != 200 || body != "hello alice" {
		t.Errorf("front proxy: %d %s", code, body)
	}
	code, body = call(&proxyPair, "/apis/metrics.k8s.io/v1beta1/nodes", map[string]string{"X-Remote-User": "bob"})
	if code != 403 || json.Unmarshal([]byte(body), &st) != nil || st.Reason != metav1.StatusReasonForbidden ||
		st.Message != `nodes.metrics.k8s.io is forbidden: User "bob" cannot list resource "nodes" in API group "metrics.k8s.io" at the cluster scope` {
		t.Errorf("bob: %d %s", code, body)
	}
	if err := api.CoreV1().ConfigMaps(ConfigMapNamespace).Delete(ctx, ConfigMapName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for d.Config().ClientCA != nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if code, body := call(&carolPair, "/x", nil); code != 401 {
		t.Errorf("client certificate after the ConfigMap was deleted: %d %s", code, body)
	}
}
