package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport"
)

// servedCert does one TLS handshake with the API server and returns the
// certificate it served.
func servedCert(t *testing.T, serverURL string, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	u, err := url.Parse(serverURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", u.Host, &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// fileClient is an admin client that reads its certificate from the
// server's rotating files, as a component or a kubelet would.
func fileClient(t *testing.T, ts *testserver.Server) kubernetes.Interface {
	t.Helper()
	tlsDir := filepath.Join(ts.DataDir, "tls")
	caPEM, err := os.ReadFile(filepath.Join(tlsDir, "server-ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	name := pki.ClientLeafName("system:admin")
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: ts.URL(), TLSClientConfig: rest.TLSClientConfig{
		CAData: caPEM, CertFile: filepath.Join(tlsDir, name+".crt"), KeyFile: filepath.Join(tlsDir, name+".key"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// TestCertificateRotation runs a server whose leaf certificates live 20 s
// and are renewed at half life: across handshakes the served certificate
// changes, requests keep succeeding past the first certificates' expiry,
// and the controller manager (an in-process client with a rotating
// client certificate) still works after its first certificate expired.
func TestCertificateRotation(t *testing.T) {
	// client-go checks rotated certificate files every 5 minutes by default
	// and then closes connections made with the old one.
	transport.CertCallbackRefreshDuration = time.Second
	const life = 20 * time.Second
	ts := testserver.Start(t, func(c *server.Config) { c.CertLifetime = life; c.CertRenewBefore = 0.5 })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	roots := x509.NewCertPool()
	caPEM, err := os.ReadFile(filepath.Join(ts.DataDir, "tls", "server-ca.crt"))
	if err != nil || !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("CA: %v", err)
	}
	cs := fileClient(t, ts)
	first := servedCert(t, ts.URL(), roots)
	if got := first.NotAfter.Sub(first.NotBefore); got > 2*life {
		t.Fatalf("serving certificate lives %v, want about %v", got, life)
	}
	serials := map[string]bool{first.SerialNumber.String(): true}
	deadline := first.NotAfter.Add(5 * time.Second)
	requests := 0
	for time.Now().Before(deadline) {
		c := servedCert(t, ts.URL(), roots)
		if time.Now().After(c.NotAfter) {
			t.Fatalf("served an expired certificate (not after %v)", c.NotAfter)
		}
		serials[c.SerialNumber.String()] = true
		if _, err := cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
			t.Fatalf("request %d at %v (first certificate expires %v): %v", requests, time.Now().Format(time.RFC3339Nano), first.NotAfter, err)
		}
		requests++
		time.Sleep(300 * time.Millisecond)
	}
	if len(serials) < 3 {
		t.Fatalf("saw %d serving certificates in %v, want at least 3 (renewed at half life)", len(serials), life)
	}
	t.Logf("%d requests, %d serving certificates", requests, len(serials))

	// The controller manager's first client certificate has expired by
	// now: publishing kube-root-ca.crt into a new namespace needs a
	// rotated one.
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "after-rotation"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := cs.CoreV1().ConfigMaps("after-rotation").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the controller manager did not publish kube-root-ca.crt after its certificate rotated: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestCertificateRotateFiles renews the serving certificate's files as
// `skiff certificate rotate` does; the running server serves the new one.
func TestCertificateRotateFiles(t *testing.T) {
	// Checked every 1.5 s, renewed by itself only in the last 12 s.
	ts := testserver.Start(t, func(c *server.Config) { c.CertLifetime = 2 * time.Minute; c.CertRenewBefore = 0.1 })
	tlsDir := filepath.Join(ts.DataDir, "tls")
	ca, err := pki.LoadOrCreateCA(tlsDir, "server-ca", "unused")
	if err != nil {
		t.Fatal(err)
	}
	before := servedCert(t, ts.URL(), ca.Pool())
	renewed, err := ca.RenewFiles(filepath.Join(tlsDir, "serving-kube-apiserver.crt"), filepath.Join(tlsDir, "serving-kube-apiserver.key"))
	if err != nil {
		t.Fatal(err)
	}
	if renewed.SerialNumber.Cmp(before.SerialNumber) == 0 {
		t.Fatal("RenewFiles kept the serial")
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		c := servedCert(t, ts.URL(), ca.Pool())
		if c.SerialNumber.Cmp(renewed.SerialNumber) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still serving serial %s, want the renewed %s", c.SerialNumber, renewed.SerialNumber)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if _, err := ts.Client.CoreV1().Namespaces().Get(context.Background(), "default", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
}
