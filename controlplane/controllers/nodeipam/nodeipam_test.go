package nodeipam_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/manager"
	"github.com/skiffhq/skiff/controlplane/controllers/nodeipam"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

func TestCIDRSet(t *testing.T) {
	_, cluster, _ := net.ParseCIDR("10.1.0.0/22")
	s, err := nodeipam.NewCIDRSet(cluster, 24)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i := 0; i < 4; i++ {
		n, err := s.Allocate()
		if err != nil {
			t.Fatal(err)
		}
		if seen[n.String()] || !cluster.Contains(n.IP) {
			t.Fatalf("allocation %d: %s (seen %v)", i, n, seen)
		}
		seen[n.String()] = true
	}
	if _, err := s.Allocate(); err != nodeipam.ErrFull {
		t.Fatalf("fifth allocation: %v, want ErrFull", err)
	}
	_, freed, _ := net.ParseCIDR("10.1.2.0/24")
	if err := s.Release(freed); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Allocate(); err != nil || n.String() != "10.1.2.0/24" {
		t.Fatalf("after release: %v %v", n, err)
	}
	_, outside, _ := net.ParseCIDR("10.2.0.0/24")
	if _, err := s.Occupy(outside); err == nil {
		t.Fatal("occupied a range outside the cluster CIDR")
	}
	_, v6, _ := net.ParseCIDR("fd00:10::/56")
	s6, err := nodeipam.NewCIDRSet(v6, 64)
	if err != nil {
		t.Fatal(err)
	}
	s6.Allocate()
	if n, _ := s6.Allocate(); n.String() != "fd00:10:0:1::/64" {
		t.Fatalf("second IPv6 range = %s", n)
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startIPAM runs a controller manager with only node IPAM over a /22
// (four /24 ranges); cancel stops it and waits for it.
func startIPAM(t *testing.T, s *testserver.Server) (cancel func()) {
	t.Helper()
	m, err := manager.New(manager.Config{RestConfig: s.Config, Controllers: []string{"nodeipam"}, ClusterCIDR: "10.200.0.0/22", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	return func() { stop(); <-done }
}

func createNode(t *testing.T, c kubernetes.Interface, name string) {
	t.Helper()
	if _, err := c.CoreV1().Nodes().Create(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitCIDR waits until node has a pod CIDR and returns it.
func waitCIDR(t *testing.T, c kubernetes.Interface, name string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, err := c.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		if err == nil && n.Spec.PodCIDR != "" {
			if len(n.Spec.PodCIDRs) != 1 || n.Spec.PodCIDRs[0] != n.Spec.PodCIDR {
				t.Fatalf("node %s: podCIDR %q podCIDRs %v", name, n.Spec.PodCIDR, n.Spec.PodCIDRs)
			}
			return n.Spec.PodCIDR
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s got no pod CIDR (last error %v)", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestNodeIPAM(t *testing.T) {
	s := testserver.Start(t, func(c *server.Config) { c.Disable = append(c.Disable, "controller-manager") })
	c := s.Client
	ctx := context.Background()
	stop := startIPAM(t, s)
	defer func() { stop() }()

	_, cluster, _ := net.ParseCIDR("10.200.0.0/22")
	got := map[string]string{} // cidr -> node
	for _, name := range []string{"a", "b", "c"} {
		createNode(t, c, name)
	}
	for _, name := range []string{"a", "b", "c"} {
		cidr := waitCIDR(t, c, name)
		ip, n, err := net.ParseCIDR(cidr)
		if err != nil || !cluster.Contains(ip) || n.Mask.String() != net.CIDRMask(24, 32).String() {
			t.Fatalf("node %s: %q is not a /24 of %s", name, cidr, cluster)
		}
		if other, dup := got[cidr]; dup {
			t.Fatalf("nodes %s and %s both got %s", other, name, cidr)
		}
		got[cidr] = name
	}
	// The fourth range goes to d; deleting b frees its range for e.
	createNode(t, c, "d")
	cidrD := waitCIDR(t, c, "d")
	if _, dup := got[cidrD]; dup {
		t.Fatalf("d got %s, already taken", cidrD)
	}
	got[cidrD] = "d"
	cidrB := waitCIDR(t, c, "b")
	if err := c.CoreV1().Nodes().Delete(ctx, "b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	createNode(t, c, "e")
	if cidrE := waitCIDR(t, c, "e"); cidrE != cidrB {
		t.Fatalf("e got %s, want b's freed %s", cidrE, cidrB)
	}

	// A restarted controller rebuilds the allocation from the nodes: with
	// e deleted while it was down, a new node f gets e's range, not one a
	// live node holds.
	stop()
	if err := c.CoreV1().Nodes().Delete(ctx, "e", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	createNode(t, c, "f")
	stop = startIPAM(t, s)
	if cidrF := waitCIDR(t, c, "f"); cidrF != cidrB {
		t.Fatalf("after restart f got %s, want the only free range %s", cidrF, cidrB)
	}
	for _, name := range []string{"a", "c", "d"} {
		n, err := c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil || got[n.Spec.PodCIDR] != name {
			t.Fatalf("node %s changed range: %q %v", name, n.Spec.PodCIDR, err)
		}
	}
	// A node arriving with a range of its own keeps it.
	own := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "own"}, Spec: corev1.NodeSpec{PodCIDR: "192.168.7.0/24", PodCIDRs: []string{"192.168.7.0/24"}}}
	if _, err := c.CoreV1().Nodes().Create(ctx, own, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if cidr := waitCIDR(t, c, "own"); cidr != "192.168.7.0/24" {
		t.Fatalf("own range replaced by %s", cidr)
	}
}
