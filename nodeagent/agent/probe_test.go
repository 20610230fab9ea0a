package agent

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The network probes against real servers on loopback.

func TestHTTPGetProbe(t *testing.T) {
	var mu sync.Mutex
	var gotUA, gotHost, gotHeader string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gotUA, gotHost, gotHeader = r.UserAgent(), r.Host, r.Header.Get("X-Probe")
		mu.Unlock()
		switch r.URL.Path {
		case "/ok":
			_, _ = w.Write([]byte("fine"))
		case "/redirect-away":
			http.Redirect(w, r, "http://elsewhere.invalid/", http.StatusFound)
		case "/slow":
			time.Sleep(2 * time.Second)
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	host, portS, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(portS)
	c := &corev1.Container{Name: "c", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(port)}}}
	m := newProbeManager(context.Background(), nil)
	for _, tc := range []struct {
		name, path string
		port       intstr.IntOrString
		want       probeResult
		out        string
	}{
		{"success by name", "ok", intstr.FromString("http"), probeSuccess, "fine"},
		{"success by number", "/ok", intstr.FromInt32(int32(port)), probeSuccess, "fine"},
		{"503", "/bad", intstr.FromString("http"), probeFailure, "HTTP probe failed with statuscode: 503"},
		{"redirect elsewhere counts as success", "/redirect-away", intstr.FromString("http"), probeSuccess, ""},
		{"unknown port name", "/ok", intstr.FromString("nope"), probeFailure, "couldn't find port: nope in c"},
		{"timeout", "/slow", intstr.FromString("http"), probeFailure, "Client.Timeout exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &corev1.HTTPGetAction{Path: tc.path, Port: tc.port, HTTPHeaders: []corev1.HTTPHeader{{Name: "X-Probe", Value: "yes"}, {Name: "Host", Value: "probe.example"}}}
			res, out := m.doHTTPGet(context.Background(), h, c, host, time.Second)
			if res != tc.want || !strings.Contains(out, tc.out) {
				t.Fatalf("got %v %q, want %v containing %q", res, out, tc.want, tc.out)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.HasPrefix(gotUA, "kube-probe/") || gotHost != "probe.example" || gotHeader != "yes" {
		t.Errorf("request had User-Agent %q, Host %q, X-Probe %q", gotUA, gotHost, gotHeader)
	}
}

func TestTCPProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if res, out := tcpProbe(context.Background(), "127.0.0.1", port, time.Second); res != probeSuccess {
		t.Fatalf("open port: %v %s", res, out)
	}
	ln.Close()
	if res, out := tcpProbe(context.Background(), "127.0.0.1", port, time.Second); res != probeFailure || !strings.Contains(out, "connection refused") {
		t.Fatalf("closed port: %v %s", res, out)
	}
}

func TestGRPCProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := health.NewServer()
	hs.SetServingStatus("db", healthpb.HealthCheckResponse_NOT_SERVING)
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	go func() { _ = gs.Serve(ln) }()
	defer gs.Stop()
	port := ln.Addr().(*net.TCPAddr).Port
	for _, tc := range []struct {
		service string
		want    probeResult
		out     string
	}{
		{"", probeSuccess, ""},
		{"db", probeFailure, `service unhealthy (responded with "NOT_SERVING")`},
		{"absent", probeFailure, "health rpc probe failed"},
	} {
		res, out := grpcProbe(context.Background(), "127.0.0.1", port, tc.service, 2*time.Second)
		if res != tc.want || !strings.Contains(out, tc.out) {
			t.Errorf("service %q: got %v %q, want %v containing %q", tc.service, res, out, tc.want, tc.out)
		}
	}
	gs.Stop()
	if res, out := grpcProbe(context.Background(), "127.0.0.1", port, "", time.Second); res != probeFailure || !strings.Contains(out, "failed to connect") {
		t.Errorf("stopped server: %v %q", res, out)
	}
}
