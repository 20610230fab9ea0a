package extserver

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/pki"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newDynamic() *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{APIServicesGVR: "APIServiceList"})
}

func getAPIService(t *testing.T, dc *dynamicfake.FakeDynamicClient) *apiregistrationv1.APIService {
	t.Helper()
	u, err := dc.Resource(APIServicesGVR).Get(context.Background(), APIServiceName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var a apiregistrationv1.APIService
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &a); err != nil {
		t.Fatal(err)
	}
	return &a
}

func writes(actions []k8stesting.Action) int {
	n := 0
	for _, a := range actions {
		if a.GetVerb() == "create" || a.GetVerb() == "update" {
			n++
		}
	}
	return n
}

func TestRegistrationEnsure(t *testing.T) {
	ctx := context.Background()
	// A Service of that name exists as ClusterIP: it becomes ExternalName.
	cs := fake.NewClientset(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ServiceNamespace, Name: ServiceName},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.0.0.9", ClusterIPs: []string{"10.0.0.9"}, Ports: []corev1.ServicePort{{Port: 443}}}})
	dc := newDynamic()
	r := &Registration{Client: cs, Dynamic: dc, Host: "localhost", Port: 4443, CABundle: []byte("ca-1")}
	if err := r.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	svc, err := cs.CoreV1().Services(ServiceNamespace).Get(ctx, ServiceName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Type != corev1.ServiceTypeExternalName || svc.Spec.ExternalName != "localhost" || svc.Spec.ClusterIP != "" || len(svc.Spec.ClusterIPs) != 0 ||
		len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 4443 || svc.Labels[ManagedByLabel] != managedBy {
		t.Errorf("service %+v", svc)
	}
	a := getAPIService(t, dc)
	sp := a.Spec
	if sp.Service == nil || sp.Service.Namespace != ServiceNamespace || sp.Service.Name != ServiceName || sp.Service.Port == nil || *sp.Service.Port != 4443 ||
		sp.Group != "metrics.k8s.io" || sp.Version != "v1beta1" || string(sp.CABundle) != "ca-1" || sp.GroupPriorityMinimum != 100 || sp.VersionPriority != 100 ||
		sp.InsecureSkipTLSVerify || a.Labels[ManagedByLabel] != managedBy {
		t.Errorf("apiservice %+v", a)
	}

	// Nothing changed: nothing written.
	cs.ClearActions()
	dc.ClearActions()
	if err := r.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if n := writes(cs.Actions()) + writes(dc.Actions()); n != 0 {
		t.Errorf("%d writes when nothing changed", n)
	}

	// A new serving certificate (a restart) and port: both updated.
	r.CABundle, r.Port = []byte("ca-2"), 5443
	if err := r.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if a := getAPIService(t, dc); string(a.Spec.CABundle) != "ca-2" || *a.Spec.Service.Port != 5443 {
		t.Errorf("apiservice not updated: %+v", a.Spec)
	}
	if svc, _ := cs.CoreV1().Services(ServiceNamespace).Get(ctx, ServiceName, metav1.GetOptions{}); svc.Spec.Ports[0].Port != 5443 {
		t.Errorf("service not updated: %+v", svc.Spec)
	}
}

// TestRegistrationRetries: an API server without apiservices (its 404 for
// the resource) is retried, logged, until it serves them.
func TestRegistrationRetries(t *testing.T) {
	cs := fake.NewClientset()
	dc := newDynamic()
	var missing atomic.Bool
	missing.Store(true)
	var attempts atomic.Int32
	dc.PrependReactor("*", "apiservices", func(k8stesting.Action) (bool, runtime.Object, error) {
		attempts.Add(1)
		if missing.Load() {
			// What client-go makes of a 404 without a Status body.
			return true, nil, apierrors.NewGenericServerResponse(404, "get", apiregistrationv1.Resource("apiservices"), APIServiceName, "", 0, true)
		}
		return false, nil, nil
	})
	err := (&Registration{Client: cs, Dynamic: dc, Host: "h", Port: 1}).Ensure(context.Background())
	if !isUnknownResource(err) {
		t.Fatalf("error %v is not an unknown resource", err)
	}
	if isUnknownResource(apierrors.NewNotFound(apiregistrationv1.Resource("apiservices"), APIServiceName)) {
		t.Fatal("a missing object taken for a missing resource")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &Registration{Client: cs, Dynamic: dc, Host: "h", Port: 1, CABundle: []byte("ca"), RetryMin: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond, Logger: quiet()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for attempts.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	missing.Store(false)
	for time.Now().Before(deadline) {
		if _, err := dc.Resource(APIServicesGVR).Get(ctx, APIServiceName, metav1.GetOptions{}); err == nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if a := getAPIService(t, dc); string(a.Spec.CABundle) != "ca" {
		t.Errorf("apiservice %+v", a.Spec)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestServingCert(t *testing.T) {
	t.Run("self-signed", func(t *testing.T) {
		cert, ca, err := servingCert(Options{ServiceHost: "metrics.example", BindAddress: "10.1.2.3"})
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			t.Fatal("caBundle has no certificate")
		}
		// The aggregator verifies <service>.<namespace>.svc; clients on the
		// machine use localhost or 127.0.0.1.
		for _, name := range []string{"skiff-metrics.kube-system.svc", "localhost", "127.0.0.1", "::1", "metrics.example", "10.1.2.3"} {
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "other.example"}); err == nil {
			t.Error("verifies for other.example")
		}
	})
	t.Run("files", func(t *testing.T) {
		dir := t.TempDir()
		ca, err := pki.LoadOrCreateCA(dir, "ca", "test-ca")
		if err != nil {
			t.Fatal(err)
		}
		certPEM, keyPEM, err := ca.Issue("skiff-metrics", nil, []string{"skiff-metrics.kube-system.svc"}, []net.IP{net.IPv4(127, 0, 0, 1)}, true, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
		if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		_, bundle, err := servingCert(Options{CertFile: certFile, KeyFile: keyFile})
		if err != nil || !bytes.Equal(bundle, certPEM) {
			t.Errorf("default bundle %q %v, want the certificate file", bundle, err)
		}
		_, bundle, err = servingCert(Options{CertFile: certFile, KeyFile: keyFile, CAFile: filepath.Join(dir, "ca.crt")})
		if b, _ := pem.Decode(bundle); err != nil || b == nil || !bytes.Equal(b.Bytes, ca.Cert.Raw) {
			t.Errorf("--tls-ca-file bundle %q %v", bundle, err)
		}
		if _, _, err := servingCert(Options{CertFile: certFile}); err == nil {
			t.Error("a certificate without a key accepted")
		}
		if _, _, err := servingCert(Options{CAFile: filepath.Join(dir, "ca.crt")}); err == nil {
			t.Error("a CA file without a certificate accepted")
		}
	})
}
