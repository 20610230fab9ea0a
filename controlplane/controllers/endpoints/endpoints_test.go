package endpoints_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/endpoints"
	"github.com/skiffhq/skiff/controlplane/controllers/internal/playnode"
	"github.com/skiffhq/skiff/internal/testserver"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

func eventually(t *testing.T, what string, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func createPod(t *testing.T, c kubernetes.Interface, name, app string, httpPort int32) {
	t.Helper()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: httpPort}}}}}}
	if _, err := c.CoreV1().Pods("default").Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// addrs maps pod name → "ready"/"notready" and its port, per subset.
func addrs(ep *corev1.Endpoints) map[string]string {
	out := map[string]string{}
	for _, s := range ep.Subsets {
		port := int32(0)
		for _, p := range s.Ports {
			if p.Name == "http" {
				port = p.Port
			}
		}
		for _, a := range s.Addresses {
			out[a.TargetRef.Name] = fmt.Sprintf("ready:%d", port)
		}
		for _, a := range s.NotReadyAddresses {
			out[a.TargetRef.Name] = fmt.Sprintf("notready:%d", port)
		}
	}
	return out
}

func slicesOf(t *testing.T, c kubernetes.Interface, svc string) []discoveryv1.EndpointSlice {
	t.Helper()
	l, err := c.DiscoveryV1().EndpointSlices("default").List(context.Background(), metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

func TestEndpointsFollowReadiness(t *testing.T) {
	s := testserver.Start(t)
	ctx := context.Background()
	c := s.Client
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "web"},
		Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, TargetPort: intstr.FromString("http")},
			{Name: "metrics", Port: 9090, TargetPort: intstr.FromInt32(9090)},
		},
	}}
	if _, err := c.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	createPod(t, c, "a", "web", 8080)
	createPod(t, c, "b", "web", 8081)
	if err := playnode.SetReady(ctx, c, "default", "a", true); err != nil {
		t.Fatal(err)
	}
	if err := playnode.SetReady(ctx, c, "default", "b", false); err != nil {
		t.Fatal(err)
	}
	eventually(t, "endpoints", 20*time.Second, func() error {
		ep, err := c.CoreV1().Endpoints("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		got := addrs(ep)
		if got["a"] != "ready:8080" || got["b"] != "notready:8081" || len(got) != 2 {
			return fmt.Errorf("addresses %v", got)
		}
		return nil
	})
	eventually(t, "slices", 20*time.Second, func() error {
		sl := slicesOf(t, c, "web")
		conds := map[string]string{}
		for _, s := range sl {
			if s.Labels[discoveryv1.LabelManagedBy] != endpoints.ManagedBy || s.AddressType != discoveryv1.AddressTypeIPv4 {
				return fmt.Errorf("slice %s labels %v type %s", s.Name, s.Labels, s.AddressType)
			}
			if ref := metav1.GetControllerOf(&s); ref == nil || ref.Kind != "Service" || ref.Name != "web" {
				return fmt.Errorf("slice owner %+v", ref)
			}
			for _, e := range s.Endpoints {
				conds[e.TargetRef.Name] = fmt.Sprintf("%v/%v/%v", *e.Conditions.Ready, *e.Conditions.Serving, *e.Conditions.Terminating)
			}
		}
		if len(sl) != 2 || conds["a"] != "true/true/false" || conds["b"] != "false/false/false" {
			return fmt.Errorf("%d slices, conditions %v", len(sl), conds)
		}
		return nil
	})

	// Readiness changes show within a second.
	start := time.Now()
	if err := playnode.SetReady(ctx, c, "default", "b", true); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b ready in endpoints and slices", 5*time.Second, func() error {
		ep, err := c.CoreV1().Endpoints("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got := addrs(ep); got["b"] != "ready:8081" {
			return fmt.Errorf("addresses %v", got)
		}
		for _, s := range slicesOf(t, c, "web") {
			for _, e := range s.Endpoints {
				if e.TargetRef.Name == "b" && !*e.Conditions.Ready {
					return fmt.Errorf("slice not ready yet")
				}
			}
		}
		return nil
	})
	if d := time.Since(start); d > time.Second {
		t.Fatalf("readiness took %v to reach endpoints", d)
	}
	if err := c.CoreV1().Pods("default").Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a removed", 5*time.Second, func() error {
		ep, err := c.CoreV1().Endpoints("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got := addrs(ep); len(got) != 1 {
			return fmt.Errorf("addresses %v", got)
		}
		if n := len(slicesOf(t, c, "web")); n != 1 {
			return fmt.Errorf("%d slices", n)
		}
		return nil
	})

	// publishNotReadyAddresses lists unready pods as ready.
	pub := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "peers"}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "db"}, ClusterIP: corev1.ClusterIPNone, PublishNotReadyAddresses: true,
		Ports: []corev1.ServicePort{{Name: "http", Port: 80}},
	}}
	if _, err := c.CoreV1().Services("default").Create(ctx, pub, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	createPod(t, c, "db-0", "db", 80)
	if err := playnode.SetReady(ctx, c, "default", "db-0", false); err != nil {
		t.Fatal(err)
	}
	eventually(t, "publishNotReadyAddresses", 10*time.Second, func() error {
		ep, err := c.CoreV1().Endpoints("default").Get(ctx, "peers", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if _, ok := ep.Labels["service.kubernetes.io/headless"]; !ok {
			return fmt.Errorf("labels %v", ep.Labels)
		}
		if got := addrs(ep); got["db-0"] != "ready:80" {
			return fmt.Errorf("addresses %v", got)
		}
		return nil
	})
}

func TestEndpointSlicesSplitAt100(t *testing.T) {
	s := testserver.Start(t)
	ctx := context.Background()
	c := s.Client
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "many"}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "many"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	if _, err := c.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const n = 130
	for i := range n {
		name := fmt.Sprintf("p%03d", i)
		createPod(t, c, name, "many", 80)
		if err := playnode.SetReady(ctx, c, "default", name, true); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "130 endpoints in slices of at most 100", 30*time.Second, func() error {
		total := 0
		sl := slicesOf(t, c, "many")
		for _, s := range sl {
			if len(s.Endpoints) > endpoints.MaxPerSlice {
				return fmt.Errorf("slice %s has %d endpoints", s.Name, len(s.Endpoints))
			}
			total += len(s.Endpoints)
		}
		if total != n || len(sl) != 2 {
			return fmt.Errorf("%d endpoints in %d slices", total, len(sl))
		}
		return nil
	})
}
