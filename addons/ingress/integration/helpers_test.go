package integration_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// env is a test server running the ingress add-on on free loopback ports.
type env struct {
	t         *testing.T
	ts        *testserver.Server
	ns        string
	httpAddr  string
	httpsAddr string
	client    *http.Client
}

func start(t *testing.T) *env {
	t.Helper()
	ts := testserver.Start(t, func(c *server.Config) {
		c.IngressHTTPAddress = "127.0.0.1:0"
		c.IngressHTTPSAddress = "127.0.0.1:0"
	})
	ing := ts.Ingress()
	if ing == nil {
		t.Fatal("ingress add-on not started")
	}
	waitFor(t, 30*time.Second, "ingress ready", func() (bool, string) { return ing.Ready(), "" })
	addrs := ing.Addrs()
	e := &env{t: t, ts: ts, ns: "default", httpAddr: addrs["http"], httpsAddr: addrs["https"]}
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: false, MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	e.client = &http.Client{
		Transport:     tr,
		Timeout:       20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	// The server made its default IngressClass `skiff` for the add-on.
	waitFor(t, 30*time.Second, "IngressClass skiff", func() (bool, string) {
		c, err := ts.Client.NetworkingV1().IngressClasses().Get(context.Background(), "skiff", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return c.Spec.Controller == "skiff.io/ingress-controller", "controller " + c.Spec.Controller
	})
	return e
}

func waitFor(t *testing.T, d time.Duration, what string, f func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, last := f()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// echo is what the test backends answer: who they are and what they saw.
type echo struct {
	Backend string            `json:"backend"`
	Method  string            `json:"method"`
	Host    string            `json:"host"`
	Path    string            `json:"path"`
	Query   string            `json:"query"`
	Headers map[string]string `json:"headers"`
	Proto   string            `json:"proto"`
}

// backend starts an HTTP server on ip:0 that answers an echo as JSON.
func backend(t *testing.T, ip, name string) *httptest.Server {
	t.Helper()
	return backendWith(t, ip, echoHandler(name))
}

// echoHandler answers an echo as JSON, after ?sleep=<duration> if asked.
// ?stall=<duration> sends a head and 10 of the 100 bytes it announces,
// then waits that long (or until the proxy closes the connection).
func echoHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d := r.URL.Query().Get("stall"); d != "" {
			dur, _ := time.ParseDuration(d)
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Length", "100")
			_, _ = io.WriteString(w, "first ten.")
			http.NewResponseController(w).Flush()
			select {
			case <-time.After(dur):
			case <-r.Context().Done():
			}
			return
		}
		if d := r.URL.Query().Get("sleep"); d != "" {
			dur, _ := time.ParseDuration(d)
			select {
			case <-time.After(dur):
			case <-r.Context().Done():
				return
			}
		}
		_, _ = io.Copy(io.Discard, r.Body)
		hs := map[string]string{}
		for k := range r.Header {
			hs[k] = strings.Join(r.Header.Values(k), ", ")
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echo{Backend: name, Method: r.Method, Host: r.Host, Path: r.URL.Path, Query: r.URL.RawQuery, Headers: hs, Proto: r.Proto})
	})
}

func backendWith(t *testing.T, ip string, h http.Handler) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	s := &httptest.Server{Listener: ln, Config: &http.Server{Handler: h}}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func hostPort(t *testing.T, s *httptest.Server) (string, int32) {
	h, p, err := net.SplitHostPort(s.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return h, int32(n)
}

// service creates (or replaces the endpoints of) a selector-less Service
// with port 80 "http" whose EndpointSlice lists the backends' addresses.
// All backends must share one port number or be given separately; here
// each backend gets its own slice so ports may differ.
func (e *env) service(name string, backends ...*httptest.Server) {
	e.t.Helper()
	ctx := context.Background()
	cs := e.ts.Client
	_, err := cs.CoreV1().Services(e.ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		e.t.Fatal(err)
	}
	e.endpoints(name, backends...)
}

// endpoints replaces the service's EndpointSlices: one per backend.
func (e *env) endpoints(name string, backends ...*httptest.Server) {
	e.t.Helper()
	ctx := context.Background()
	cs := e.ts.Client.DiscoveryV1().EndpointSlices(e.ns)
	sel := discoveryv1.LabelServiceName + "=" + name
	old, err := cs.List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		e.t.Fatal(err)
	}
	// The old slices go after the new ones exist, as the EndpointSlice
	// controller never leaves a service without slices mid-update.
	defer func() {
		for _, sl := range old.Items {
			if err := cs.Delete(ctx, sl.Name, metav1.DeleteOptions{}); err != nil {
				e.t.Fatal(err)
			}
		}
	}()
	for i, b := range backends {
		ip, port := hostPort(e.t, b)
		_, err := cs.Create(ctx, &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				Name:   fmt.Sprintf("%s-%d-%d", name, i, time.Now().UnixNano()),
				Labels: map[string]string{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "ingress-test"},
			},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}},
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		}, metav1.CreateOptions{})
		if err != nil {
			e.t.Fatal(err)
		}
	}
}

func path(pt networkingv1.PathType, p, svc string) networkingv1.HTTPIngressPath {
	return networkingv1.HTTPIngressPath{
		Path: p, PathType: ptr.To(pt),
		Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Number: 80}}},
	}
}

func rule(host string, paths ...networkingv1.HTTPIngressPath) networkingv1.IngressRule {
	return networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: paths}}}
}

func (e *env) ingress(name string, ann map[string]string, spec networkingv1.IngressSpec) *networkingv1.Ingress {
	e.t.Helper()
	if spec.IngressClassName == nil {
		spec.IngressClassName = ptr.To("skiff")
	}
	ing, err := e.ts.Client.NetworkingV1().Ingresses(e.ns).Create(context.Background(), &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann},
		Spec:       spec,
	}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return ing
}

// get sends a request through the HTTP listener with the given Host.
func (e *env) do(method, host, uri string, hdr http.Header, body io.Reader) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, "http://"+e.httpAddr+uri, body)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Host = host
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s%s: %v", method, host, uri, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s%s: body: %v", method, host, uri, err)
	}
	return resp, b
}

func (e *env) get(host, uri string) (int, echo, string) {
	e.t.Helper()
	resp, b := e.do("GET", host, uri, nil, nil)
	var ec echo
	_ = json.Unmarshal(b, &ec)
	return resp.StatusCode, ec, string(b)
}

// waitRoute polls until host+uri is answered by backend name.
func (e *env) waitRoute(host, uri, name string) time.Duration {
	e.t.Helper()
	start := time.Now()
	waitFor(e.t, 20*time.Second, host+uri+" → "+name, func() (bool, string) {
		code, ec, body := e.get(host, uri)
		return code == 200 && ec.Backend == name, fmt.Sprintf("%d %s", code, body)
	})
	return time.Since(start)
}

// cert makes a self-signed certificate for names; PEM cert and key.
func cert(t *testing.T, names ...string) ([]byte, []byte, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), c
}

// tlsGet connects to the HTTPS listener with SNI serverName and returns
// the served leaf certificate and the answer.
func (e *env) tlsGet(serverName, uri string) (*x509.Certificate, int, string, error) {
	conn, err := tls.Dial("tcp", e.httpsAddr, &tls.Config{ServerName: serverName, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		return nil, 0, "", err
	}
	defer conn.Close()
	leaf := conn.ConnectionState().PeerCertificates[0]
	tr := &http.Transport{DialTLSContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil }}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "https://"+serverName+uri, nil)
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return leaf, 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return leaf, resp.StatusCode, string(b), nil
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
