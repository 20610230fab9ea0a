package integration_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/skiffhq/skiff/addons/dns"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// TestStandalone runs the add-on as `skiff dns` does: out of the server,
// with the system:skiff-dns identity, serving /healthz, /readyz, /metrics.
func TestStandalone(t *testing.T) {
	ts := testserver.Start(t, func(c *server.Config) { c.Disable = append(c.Disable, server.DNSName) })
	if ts.DNS() != nil {
		t.Fatal("--disable dns still started the in-server add-on")
	}
	rc := rest.CopyConfig(ts.Config)
	rc.Impersonate = rest.ImpersonationConfig{UserName: "system:skiff-dns"}
	cs := kubernetes.NewForConfigOrDie(rc)
	d, err := dns.New(dns.Options{Client: cs, Listen: []string{"127.0.0.1:0"}, NoForward: true})
	if err != nil {
		t.Fatal(err)
	}
	health := httptest.NewServer(d.HealthHandler())
	defer health.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(health.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before Run: %d", code)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	addr := d.Addrs()[0]
	deadline := time.Now().Add(20 * time.Second)
	for !d.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("never ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz when synced: %d", code)
	}
	svc, err := ts.Client.CoreV1().Services("default").Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "alone"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, addr, "alone.default.svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, svc.Spec.ClusterIP)
	eventually(t, addr, "example.org.", mdns.TypeA, mdns.RcodeRefused)
	// The listener counts an answer after sending it, so the counters can
	// trail the reply the client just read by a moment.
	want := []string{`skiff_dns_requests_total{proto="udp"}`, `skiff_dns_responses_total{rcode="REFUSED"}`}
	deadline = time.Now().Add(5 * time.Second)
	for {
		_, metrics := get("/metrics")
		var missing []string
		for _, s := range want {
			if !strings.Contains(metrics, s) {
				missing = append(missing, s)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks %v", missing)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
