package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/addons/ingress"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// syncBuffer is a goroutine-safe access log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestStandalone runs the add-on as `skiff ingress` does: outside the
// server, with only the system:skiff-ingress identity (so its ClusterRole
// is proven sufficient: routing, status, events), serving /readyz,
// /metrics and JSON access logs.
func TestStandalone(t *testing.T) {
	ts := testserver.Start(t) // the zero Config: no ingress in the server
	if ts.Ingress() != nil {
		t.Fatal("the zero Config started the in-server ingress")
	}
	ctx := context.Background()
	rc := rest.CopyConfig(ts.Config)
	rc.Impersonate = rest.ImpersonationConfig{UserName: "system:skiff-ingress"}
	var logs syncBuffer
	ing, err := ingress.New(ingress.Options{
		Client:           kubernetes.NewForConfigOrDie(rc),
		HTTPAddr:         "127.0.0.1:0",
		PublishAddresses: []string{"127.0.0.1", "ingress.example.net"},
		AccessLog:        slog.New(slog.NewJSONHandler(&logs, nil)),
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	health := httptest.NewServer(ing.HealthHandler())
	defer health.Close()
	hget := func(p string) (int, string) {
		resp, err := http.Get(health.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := hget("/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before Run: %d", code)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ing.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitFor(t, 30*time.Second, "ready", func() (bool, string) { return ing.Ready(), "" })
	if code, _ := hget("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz when synced: %d", code)
	}

	e := &env{t: t, ts: ts, ns: "default", httpAddr: ing.Addrs()["http"], client: &http.Client{Timeout: 10 * time.Second}}
	if _, err := ts.Client.NetworkingV1().IngressClasses().Create(ctx, &networkingv1.IngressClass{
		ObjectMeta: metav1.ObjectMeta{Name: "skiff", Annotations: map[string]string{"ingressclass.kubernetes.io/is-default-class": "true"}},
		Spec:       networkingv1.IngressClassSpec{Controller: ingress.DefaultController},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.service("alone", backend(t, "127.0.0.2", "alone"))
	// No class: the default IngressClass adopts it.
	if _, err := ts.Client.NetworkingV1().Ingresses("default").Create(ctx, &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: "alone"},
		Spec:       networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{rule("alone.example.com", path(prefix, "/", "alone"))}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitRoute("alone.example.com", "/x", "alone")
	waitFor(t, 20*time.Second, "status", func() (bool, string) {
		i, err := ts.Client.NetworkingV1().Ingresses("default").Get(ctx, "alone", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		lb := i.Status.LoadBalancer.Ingress
		return len(lb) == 2 && lb[0].IP == "127.0.0.1" && lb[1].Hostname == "ingress.example.net", ""
	})

	// Access log: one JSON object per request with the route's names.
	var rec map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("access log line %q: %v", line, err)
		}
		if m["status"] == float64(200) {
			rec = m
		}
	}
	if rec == nil || rec["ingress"] != "alone" || rec["service"] != "alone" || rec["host"] != "alone.example.com" ||
		rec["uri"] != "/x" || rec["msg"] != "access" || len(rec["request_id"].(string)) != 32 || !strings.HasPrefix(rec["endpoint"].(string), "127.0.0.2:") {
		t.Errorf("access log record: %v", rec)
	}
	_, metrics := hget("/metrics")
	for _, s := range []string{`skiff_ingress_requests_total{code="200",ingress="alone",namespace="default",service="alone"}`, "skiff_ingress_table_swaps_total"} {
		if !strings.Contains(metrics, s) {
			t.Errorf("/metrics lacks %s", s)
		}
	}
}

// TestServerPortBusy: an ingress port that cannot be bound does not stop
// `skiff server`; the API keeps serving.
func TestServerPortBusy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ts := testserver.Start(t, func(c *server.Config) { c.IngressHTTPAddress = ln.Addr().String() })
	if _, err := ts.Client.CoreV1().Namespaces().Get(context.Background(), "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("API with the ingress port busy: %v", err)
	}
	if ts.Ingress() == nil || ts.Ingress().Ready() {
		t.Error("ingress on a busy port reported ready")
	}
}
