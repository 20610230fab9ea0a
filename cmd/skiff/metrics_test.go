package main

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/freeport"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

// TestMetricsSecurePortRegisters runs `skiff metrics --secure-port P
// --register-apiservice` against a server without the built-in add-on:
// the APIService becomes Available and metrics.k8s.io answers through
// the API server's aggregation layer.
func TestMetricsSecurePortRegisters(t *testing.T) {
	s := testserver.Start(t, func(c *server.Config) { c.Disable = append(c.Disable, server.MetricsName) })
	port, err := freeport.On("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := metricsCmd()
	cmd.SetArgs([]string{"--kubeconfig", s.Kubeconfig(), "--health-address", "", "--metric-resolution", "1s",
		"--secure-port", strconv.Itoa(port), "--register-apiservice"})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("skiff metrics: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("skiff metrics did not stop")
		}
	})

	apiservices := schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("skiff metrics exited: %v", err)
		default:
		}
		last = func() error {
			u, err := s.Dynamic.Resource(apiservices).Get(ctx, "v1beta1.metrics.k8s.io", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if p, _, _ := unstructured.NestedInt64(u.Object, "spec", "service", "port"); p != int64(port) {
				return fmt.Errorf("service port %d, want %d", p, port)
			}
			var l metricsv1beta1.NodeMetricsList
			return s.Client.CoreV1().RESTClient().Get().AbsPath("/apis/metrics.k8s.io/v1beta1/nodes").Do(ctx).Into(&l)
		}()
		if last == nil {
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("metrics.k8s.io through the aggregation layer: %v", last)
}
