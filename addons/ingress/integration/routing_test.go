package integration_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

const (
	exact  = networkingv1.PathTypeExact
	prefix = networkingv1.PathTypePrefix
)

// TestRouting: host and path routing through the server's ingress,
// forwarding headers, round-robin, 404/503 answers with reasons, events for
// bad backends, status.loadBalancer from node addresses, reconfiguration.
func TestRouting(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	cs := e.ts.Client
	e.service("a", backend(t, "127.0.0.2", "a"))
	e.service("b", backend(t, "127.0.0.3", "b"))
	e.service("c", backend(t, "127.0.0.4", "c1"), backend(t, "127.0.0.5", "c2"))

	// A node so that status.loadBalancer has an address to publish.
	_, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ing-node"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The node lifecycle controller writes the new node too: retry.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := cs.CoreV1().Nodes().Get(ctx, "ing-node", metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.10"}}
		_, err = cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	e.ingress("web", nil, networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{
		rule("foo.example.com", path(prefix, "/", "a"), path(exact, "/b", "b"), path(prefix, "/b/", "c")),
		rule("*.wild.example.com", path(prefix, "/", "b")),
	}})
	e.waitRoute("foo.example.com", "/", "a")
	t.Logf("Ingress create → first routed request: %v (polling every 10ms)", time.Since(start).Round(time.Millisecond))

	for _, c := range []struct{ host, uri, want string }{
		{"foo.example.com", "/x/y?q=1", "a"},
		{"FOO.example.com:8080", "/", "a"},
		{"foo.example.com", "/b", "b"},
		{"foo.example.com", "/b/", "c"},
		{"foo.example.com", "/b/x", "c"},
		{"foo.example.com", "/bx", "a"},
		{"x.wild.example.com", "/", "b"},
	} {
		code, ec, body := e.get(c.host, c.uri)
		if code != 200 || !strings.HasPrefix(ec.Backend, c.want) {
			t.Errorf("%s%s: %d %s, want %s", c.host, c.uri, code, body, c.want)
		}
	}
	for _, host := range []string{"y.x.wild.example.com", "other.example.com"} {
		if code, _, body := e.get(host, "/"); code != 404 || !strings.Contains(body, "no Ingress rule") {
			t.Errorf("%s: %d %s, want 404", host, code, body)
		}
	}

	// What the backend sees.
	resp, b := e.do("GET", "foo.example.com", "/x?y=1", http.Header{"X-Request-Id": {"abc-123"}, "X-Forwarded-For": {"203.0.113.7"}}, nil)
	var ec echo
	if err := jsonUnmarshal(b, &ec); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"X-Forwarded-For":   "203.0.113.7, 127.0.0.1",
		"X-Forwarded-Host":  "foo.example.com",
		"X-Forwarded-Proto": "http",
		"X-Real-Ip":         "127.0.0.1",
		"X-Request-Id":      "abc-123",
		"Forwarded":         `for=127.0.0.1;host="foo.example.com";proto=http`,
	} {
		if ec.Headers[k] != want {
			t.Errorf("backend saw %s=%q, want %q", k, ec.Headers[k], want)
		}
	}
	if ec.Host != "foo.example.com" || ec.Query != "y=1" || ec.Path != "/x" {
		t.Errorf("backend saw host %q path %q query %q", ec.Host, ec.Path, ec.Query)
	}
	if resp.Header.Get("X-Request-Id") != "abc-123" {
		t.Errorf("answer's X-Request-ID %q", resp.Header.Get("X-Request-Id"))
	}
	resp, _ = e.do("GET", "foo.example.com", "/", nil, nil)
	if id := resp.Header.Get("X-Request-Id"); len(id) != 32 {
		t.Errorf("generated X-Request-ID %q", id)
	}

	// Round-robin over the two endpoints of c.
	seen := map[string]int{}
	for range 20 {
		_, ec, _ := e.get("foo.example.com", "/b/rr")
		seen[ec.Backend]++
	}
	if seen["c1"] != 10 || seen["c2"] != 10 {
		t.Errorf("round-robin: %v", seen)
	}

	// h2c from the client.
	h2c := &http.Transport{Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	defer h2c.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "http://"+e.httpAddr+"/", nil)
	req.Host = "foo.example.com"
	if resp, err := (&http.Client{Transport: h2c, Timeout: 10 * time.Second}).Do(req); err != nil {
		t.Errorf("h2c: %v", err)
	} else {
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
			t.Errorf("h2c: %s %d", resp.Proto, resp.StatusCode)
		}
	}

	// Reconfiguration: a new path routes, the old ones keep working.
	// (The controller writes the Ingress's status meanwhile: retry on a
	// conflict.)
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		ing, err := cs.NetworkingV1().Ingresses(e.ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		ing.Spec.Rules[0].HTTP.Paths = append(ing.Spec.Rules[0].HTTP.Paths, path(prefix, "/new", "b"))
		_, err = cs.NetworkingV1().Ingresses(e.ns).Update(ctx, ing, metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("Ingress update → first routed request: %v", e.waitRoute("foo.example.com", "/new", "b").Round(time.Millisecond))

	// A catch-all defaultBackend takes unknown hosts.
	e.ingress("catchall", nil, networkingv1.IngressSpec{DefaultBackend: &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "b", Port: networkingv1.ServiceBackendPort{Name: "http"}}}})
	e.waitRoute("other.example.com", "/", "b")

	// Bad backends: a missing service answers 503 with the reason, a
	// resource backend is rejected; both become Warning events and the
	// other routes keep working.
	e.ingress("bad", nil, networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{
		rule("bad.example.com", path(prefix, "/", "missing"), networkingv1.HTTPIngressPath{
			Path: "/res", PathType: ptr.To(prefix),
			Backend: networkingv1.IngressBackend{Resource: &corev1.TypedLocalObjectReference{APIGroup: ptr.To("example.com"), Kind: "Bucket", Name: "b"}},
		}),
	}})
	waitFor(t, 20*time.Second, "503 for a missing service", func() (bool, string) {
		code, _, body := e.get("bad.example.com", "/")
		return code == 503 && strings.Contains(body, "service default/missing not found"), body
	})
	for _, reason := range []string{"UnsupportedBackend", "BackendNotReady"} {
		waitFor(t, 20*time.Second, "event "+reason, func() (bool, string) {
			evs, err := cs.CoreV1().Events(e.ns).List(ctx, metav1.ListOptions{FieldSelector: fields.Set{"involvedObject.name": "bad", "reason": reason}.String()})
			if err != nil {
				return false, err.Error()
			}
			return len(evs.Items) > 0 && evs.Items[0].Type == corev1.EventTypeWarning, ""
		})
	}
	e.waitRoute("foo.example.com", "/", "a")

	// A service without ready endpoints answers 503 fast.
	e.service("empty")
	e.ingress("empty", nil, networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{rule("empty.example.com", path(prefix, "/", "empty"))}})
	waitFor(t, 20*time.Second, "503 without endpoints", func() (bool, string) {
		code, _, body := e.get("empty.example.com", "/")
		return code == 503 && strings.Contains(body, "no ready endpoints"), body
	})

	// Another class's Ingress is not served.
	e.ingress("theirs", nil, networkingv1.IngressSpec{IngressClassName: ptr.To("nginx"), Rules: []networkingv1.IngressRule{rule("theirs.example.com", path(prefix, "/", "a"))}})
	time.Sleep(200 * time.Millisecond) // give a wrong route the chance to appear
	if _, ec, _ := e.get("theirs.example.com", "/"); ec.Backend == "a" {
		t.Error("an Ingress of another class is served")
	}

	// status.loadBalancer carries the node address.
	waitFor(t, 20*time.Second, "status.loadBalancer", func() (bool, string) {
		ing, err := cs.NetworkingV1().Ingresses(e.ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		lb := ing.Status.LoadBalancer.Ingress
		return len(lb) == 1 && lb[0].IP == "192.0.2.10", ""
	})
	if ing, _ := cs.NetworkingV1().Ingresses(e.ns).Get(ctx, "theirs", metav1.GetOptions{}); len(ing.Status.LoadBalancer.Ingress) != 0 {
		t.Error("status written on another class's Ingress")
	}

	// Metrics on the API server's /metrics.
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		`skiff_ingress_requests_total{code="200",ingress="web",namespace="default",service="a"}`,
		`skiff_ingress_requests_total{code="404",ingress="",namespace="",service=""}`,
		`skiff_ingress_request_duration_seconds_bucket{ingress="web",namespace="default",service="c"`,
	} {
		if !strings.Contains(string(raw), s) {
			t.Errorf("/metrics lacks %s", s)
		}
	}
}

// TestTLS: two certificates chosen by SNI, wildcard certificate, the
// default certificate for other names, TLS 1.2+ only, HTTP→HTTPS redirect
// for TLS hosts, reload when the Secret changes.
func TestTLS(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	cs := e.ts.Client
	e.service("a", backend(t, "127.0.0.2", "a"))
	e.service("b", backend(t, "127.0.0.3", "b"))
	secret := func(name string, crt, key []byte) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": crt, "tls.key": key}}
	}
	crtA, keyA, certA := cert(t, "a.example.com")
	crtB, keyB, certB := cert(t, "*.b.example.com")
	for _, s := range []*corev1.Secret{secret("a-tls", crtA, keyA), secret("b-tls", crtB, keyB)} {
		if _, err := cs.CoreV1().Secrets(e.ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	e.ingress("tls", nil, networkingv1.IngressSpec{
		TLS: []networkingv1.IngressTLS{
			{Hosts: []string{"a.example.com"}, SecretName: "a-tls"},
			{Hosts: []string{"*.b.example.com"}, SecretName: "b-tls"},
		},
		Rules: []networkingv1.IngressRule{
			rule("a.example.com", path(prefix, "/", "a")),
			rule("*.b.example.com", path(prefix, "/", "b")),
			rule("plain.example.com", path(prefix, "/", "a")),
		},
	})
	serial := func(name string) (string, int, string) {
		leaf, code, body, err := e.tlsGet(name, "/")
		if err != nil {
			return err.Error(), 0, ""
		}
		return leaf.SerialNumber.String(), code, body
	}
	waitFor(t, 20*time.Second, "a.example.com certificate", func() (bool, string) {
		s, code, body := serial("a.example.com")
		return s == certA.SerialNumber.String() && code == 200 && strings.Contains(body, `"backend":"a"`), s + " " + body
	})
	if s, code, body := serial("x.b.example.com"); s != certB.SerialNumber.String() || code != 200 || !strings.Contains(body, `"backend":"b"`) {
		t.Errorf("x.b.example.com: cert %s, %d %s", s, code, body)
	}
	leaf, _, _, err := e.tlsGet("unknown.example.com", "/")
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Subject.CommonName != "Skiff Ingress Default Certificate" {
		t.Errorf("default certificate: %s", leaf.Subject.CommonName)
	}
	// TLS 1.1 is refused.
	if c, err := tls.Dial("tcp", e.httpsAddr, &tls.Config{ServerName: "a.example.com", InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11}); err == nil {
		c.Close()
		t.Error("TLS 1.1 handshake succeeded")
	}
	// The backend sees X-Forwarded-Proto https.
	if _, _, body := serial("a.example.com"); !strings.Contains(body, `"X-Forwarded-Proto":"https"`) {
		t.Errorf("X-Forwarded-Proto over TLS: %s", body)
	}
	// HTTP → HTTPS redirect for TLS hosts only.
	_, port, _ := net.SplitHostPort(e.httpsAddr)
	resp, _ := e.do("GET", "a.example.com", "/p?q=1", nil, nil)
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != "https://a.example.com:"+port+"/p?q=1" {
		t.Errorf("redirect: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if code, _, _ := e.get("plain.example.com", "/"); code != 200 {
		t.Errorf("host without TLS: %d", code)
	}
	// Reload: a new certificate in the Secret is served without restart.
	crtA2, keyA2, certA2 := cert(t, "a.example.com")
	s, _ := cs.CoreV1().Secrets(e.ns).Get(ctx, "a-tls", metav1.GetOptions{})
	s.Data = map[string][]byte{"tls.crt": crtA2, "tls.key": keyA2}
	if _, err := cs.CoreV1().Secrets(e.ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "reloaded certificate", func() (bool, string) {
		s, _, _ := serial("a.example.com")
		return s == certA2.SerialNumber.String(), s
	})
	// HTTP/2 over TLS.
	tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: "a.example.com", InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "https://"+e.httpsAddr+"/", nil)
	req.Host = "a.example.com"
	if resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req); err != nil {
		t.Errorf("h2: %v", err)
	} else {
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
			t.Errorf("h2: %s %d", resp.Proto, resp.StatusCode)
		}
	}
}
