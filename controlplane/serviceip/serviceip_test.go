package serviceip_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/serviceip"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

func svc(name string, typ corev1.ServiceType, clusterIP string, nodePorts ...int32) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{
			Type:      typ,
			ClusterIP: clusterIP,
			Selector:  map[string]string{"app": name},
			Ports:     []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	for i, np := range nodePorts {
		if i > 0 {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: fmt.Sprintf("p%d", i), Port: int32(81 + i), Protocol: corev1.ProtocolTCP})
		}
		s.Spec.Ports[i].NodePort = np
	}
	return s
}

func create(t *testing.T, cs kubernetes.Interface, s *corev1.Service, opts ...metav1.CreateOptions) (*corev1.Service, error) {
	t.Helper()
	o := metav1.CreateOptions{}
	if len(opts) > 0 {
		o = opts[0]
	}
	return cs.CoreV1().Services("default").Create(context.Background(), s, o)
}

func mustCreate(t *testing.T, cs kubernetes.Interface, s *corev1.Service) *corev1.Service {
	t.Helper()
	out, err := create(t, cs, s)
	if err != nil {
		t.Fatalf("create service %s: %v", s.Name, err)
	}
	return out
}

// wantInvalid checks for a 422 whose message contains want.
func wantInvalid(t *testing.T, err error, want string) {
	t.Helper()
	if !apierrors.IsInvalid(err) {
		t.Fatalf("want 422 Invalid containing %q, got %v", want, err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err.Error(), want)
	}
}

func TestClusterIPs(t *testing.T) {
	s := testserver.Start(t)
	cs := s.Client
	ctx := context.Background()
	rng := netip.MustParsePrefix("10.43.0.0/16")

	t.Run("concurrent creates get distinct IPs", func(t *testing.T) {
		const n = 50
		var wg sync.WaitGroup
		ips := make([]string, n)
		errs := make([]error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				out, err := create(t, cs, svc(fmt.Sprintf("c%d", i), corev1.ServiceTypeClusterIP, ""))
				errs[i] = err
				if err == nil {
					ips[i] = out.Spec.ClusterIP
					if len(out.Spec.ClusterIPs) != 1 || out.Spec.ClusterIPs[0] != out.Spec.ClusterIP {
						errs[i] = fmt.Errorf("clusterIPs %v do not mirror clusterIP %s", out.Spec.ClusterIPs, out.Spec.ClusterIP)
					}
				}
			}(i)
		}
		wg.Wait()
		seen := map[string]bool{}
		for i := 0; i < n; i++ {
			if errs[i] != nil {
				t.Fatalf("service %d: %v", i, errs[i])
			}
			ip := netip.MustParseAddr(ips[i])
			if !rng.Contains(ip) || ip == netip.MustParseAddr("10.43.0.1") || ip == rng.Addr() {
				t.Errorf("service %d got %s", i, ip)
			}
			if seen[ips[i]] {
				t.Errorf("IP %s handed out twice", ips[i])
			}
			seen[ips[i]] = true
		}
		// Every allocation has exactly one reservation key.
		for ip := range seen {
			if _, err := s.Store().Get(ctx, serviceip.IPPrefix+ip); err != nil {
				t.Errorf("no reservation for %s: %v", ip, err)
			}
		}
	})

	t.Run("requested, taken, out of range, released", func(t *testing.T) {
		a := mustCreate(t, cs, svc("req-a", corev1.ServiceTypeClusterIP, "10.43.5.5"))
		if a.Spec.ClusterIP != "10.43.5.5" || len(a.Spec.ClusterIPs) != 1 || a.Spec.ClusterIPs[0] != "10.43.5.5" {
			t.Fatalf("got clusterIP %q clusterIPs %v", a.Spec.ClusterIP, a.Spec.ClusterIPs)
		}
		_, err := create(t, cs, svc("req-b", corev1.ServiceTypeClusterIP, "10.43.5.5"))
		wantInvalid(t, err, "failed to allocate IP 10.43.5.5: provided IP is already allocated")
		wantInvalid(t, err, "spec.clusterIPs: Invalid value: ")
		_, err = create(t, cs, svc("req-b", corev1.ServiceTypeClusterIP, "10.44.0.9"))
		wantInvalid(t, err, "failed to allocate IP 10.44.0.9: provided IP is not in the valid range. The range of valid IPs is 10.43.0.0/16")
		_, err = create(t, cs, svc("req-b", corev1.ServiceTypeClusterIP, "10.43.255.255"))
		wantInvalid(t, err, "provided IP is not in the valid range")
		// The kubernetes service's address is taken too.
		_, err = create(t, cs, svc("req-b", corev1.ServiceTypeClusterIP, "10.43.0.1"))
		wantInvalid(t, err, "provided IP is already allocated")

		if err := cs.CoreV1().Services("default").Delete(ctx, "req-a", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		b := mustCreate(t, cs, svc("req-b", corev1.ServiceTypeClusterIP, "10.43.5.5"))
		if b.Spec.ClusterIP != "10.43.5.5" {
			t.Fatalf("got %s after release", b.Spec.ClusterIP)
		}
	})

	t.Run("clusterIP is immutable", func(t *testing.T) {
		a := mustCreate(t, cs, svc("immut", corev1.ServiceTypeClusterIP, ""))
		a.Spec.ClusterIP, a.Spec.ClusterIPs = "10.43.6.6", nil
		_, err := cs.CoreV1().Services("default").Update(ctx, a, metav1.UpdateOptions{})
		wantInvalid(t, err, "spec.clusterIPs[0]")
		// An update that leaves the cluster IP out keeps it.
		cur, _ := cs.CoreV1().Services("default").Get(ctx, "immut", metav1.GetOptions{})
		want := cur.Spec.ClusterIP
		cur.Spec.ClusterIP, cur.Spec.ClusterIPs = "", nil
		cur.Labels = map[string]string{"x": "y"}
		up, err := cs.CoreV1().Services("default").Update(ctx, cur, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if up.Spec.ClusterIP != want {
			t.Fatalf("cluster IP changed from %s to %s", want, up.Spec.ClusterIP)
		}
	})

	t.Run("headless and ExternalName get no IP", func(t *testing.T) {
		h := mustCreate(t, cs, svc("headless", corev1.ServiceTypeClusterIP, "None"))
		if h.Spec.ClusterIP != "None" || len(h.Spec.ClusterIPs) != 1 || h.Spec.ClusterIPs[0] != "None" {
			t.Fatalf("headless: %q %v", h.Spec.ClusterIP, h.Spec.ClusterIPs)
		}
		e := svc("ext", corev1.ServiceTypeExternalName, "")
		e.Spec.ExternalName = "example.com"
		e.Spec.Selector = nil
		x := mustCreate(t, cs, e)
		if x.Spec.ClusterIP != "" || len(x.Spec.ClusterIPs) != 0 {
			t.Fatalf("ExternalName got %q %v", x.Spec.ClusterIP, x.Spec.ClusterIPs)
		}
		// ExternalName -> ClusterIP allocates; back to ExternalName releases.
		x.Spec.Type, x.Spec.ExternalName = corev1.ServiceTypeClusterIP, ""
		y, err := cs.CoreV1().Services("default").Update(ctx, x, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ip := y.Spec.ClusterIP
		if !rng.Contains(netip.MustParseAddr(ip)) {
			t.Fatalf("got %q", ip)
		}
		y.Spec.Type, y.Spec.ExternalName = corev1.ServiceTypeExternalName, "example.com"
		if _, err := cs.CoreV1().Services("default").Update(ctx, y, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Store().Get(ctx, serviceip.IPPrefix+ip); err == nil {
			t.Fatalf("reservation of %s kept after the type change to ExternalName", ip)
		}
	})

	t.Run("dry run does not reserve", func(t *testing.T) {
		out, err := create(t, cs, svc("dry", corev1.ServiceTypeNodePort, "10.43.7.7", 30777), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatal(err)
		}
		if out.Spec.ClusterIP != "10.43.7.7" || out.Spec.Ports[0].NodePort != 30777 {
			t.Fatalf("dry run answered %s %d", out.Spec.ClusterIP, out.Spec.Ports[0].NodePort)
		}
		auto, err := create(t, cs, svc("dry2", corev1.ServiceTypeNodePort, ""), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatal(err)
		}
		if auto.Spec.ClusterIP == "" || auto.Spec.Ports[0].NodePort == 0 {
			t.Fatalf("dry run did not fill values: %+v", auto.Spec)
		}
		for _, k := range []string{serviceip.IPPrefix + "10.43.7.7", serviceip.NodePortPrefix + "30777",
			serviceip.IPPrefix + auto.Spec.ClusterIP, serviceip.NodePortPrefix + fmt.Sprint(auto.Spec.Ports[0].NodePort)} {
			if _, err := s.Store().Get(ctx, k); err == nil {
				t.Errorf("dry run reserved %s", k)
			}
		}
		real := mustCreate(t, cs, svc("dry", corev1.ServiceTypeNodePort, "10.43.7.7", 30777))
		if real.Spec.ClusterIP != "10.43.7.7" {
			t.Fatal(real.Spec.ClusterIP)
		}
		// A dry run of a taken value is refused like the real thing.
		_, err = create(t, cs, svc("dry3", corev1.ServiceTypeClusterIP, "10.43.7.7"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		wantInvalid(t, err, "provided IP is already allocated")
	})
}

func TestNodePorts(t *testing.T) {
	s := testserver.Start(t)
	cs := s.Client
	ctx := context.Background()
	svcs := cs.CoreV1().Services("default")

	a := mustCreate(t, cs, svc("np-a", corev1.ServiceTypeNodePort, "", 30080))
	if a.Spec.Ports[0].NodePort != 30080 {
		t.Fatalf("got node port %d", a.Spec.Ports[0].NodePort)
	}
	_, err := create(t, cs, svc("np-b", corev1.ServiceTypeNodePort, "", 30080))
	wantInvalid(t, err, "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated")
	_, err = create(t, cs, svc("np-b", corev1.ServiceTypeNodePort, "", 8080))
	wantInvalid(t, err, "spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. The range of valid ports is 30000-32767")
	// A failed create keeps nothing: its cluster IP was given back.
	ips, err := s.Store().List(ctx, serviceip.IPPrefix, "", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(ips.KVs) != 2 { // kubernetes and np-a
		t.Fatalf("want 2 IP reservations, got %d", len(ips.KVs))
	}

	// NodePort -> ClusterIP releases the node port.
	a.Spec.Type = corev1.ServiceTypeClusterIP
	up, err := svcs.Update(ctx, a, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if up.Spec.Ports[0].NodePort != 0 {
		t.Fatalf("node port kept on ClusterIP: %d", up.Spec.Ports[0].NodePort)
	}
	b := mustCreate(t, cs, svc("np-b", corev1.ServiceTypeNodePort, "", 30080))
	if b.Spec.Ports[0].NodePort != 30080 {
		t.Fatal(b.Spec.Ports[0].NodePort)
	}

	// ClusterIP -> NodePort allocates one.
	up.Spec.Type = corev1.ServiceTypeNodePort
	up2, err := svcs.Update(ctx, up, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	np := up2.Spec.Ports[0].NodePort
	if np < 30000 || np > 32767 || np == 30080 {
		t.Fatalf("allocated node port %d", np)
	}
	if _, err := s.Store().Get(ctx, fmt.Sprintf("%s%d", serviceip.NodePortPrefix, np)); err != nil {
		t.Fatalf("node port %d not reserved: %v", np, err)
	}
	// An update without node ports keeps them.
	up2.Spec.Ports[0].NodePort = 0
	up3, err := svcs.Update(ctx, up2, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if up3.Spec.Ports[0].NodePort != np {
		t.Fatalf("node port changed from %d to %d", np, up3.Spec.Ports[0].NodePort)
	}

	// LoadBalancer + Local gets a health check node port; deleting frees all.
	lb := svc("lb", corev1.ServiceTypeLoadBalancer, "")
	lb.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	lbo := mustCreate(t, cs, lb)
	hc := lbo.Spec.HealthCheckNodePort
	if hc < 30000 || hc > 32767 || hc == lbo.Spec.Ports[0].NodePort || lbo.Spec.Ports[0].NodePort == 0 {
		t.Fatalf("health check node port %d, node port %d", hc, lbo.Spec.Ports[0].NodePort)
	}
	if err := svcs.Delete(ctx, "lb", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []int32{hc, lbo.Spec.Ports[0].NodePort} {
		if _, err := s.Store().Get(ctx, fmt.Sprintf("%s%d", serviceip.NodePortPrefix, p)); err == nil {
			t.Errorf("node port %d still reserved after delete", p)
		}
	}
	if _, err := s.Store().Get(ctx, serviceip.IPPrefix+lbo.Spec.ClusterIP); err == nil {
		t.Errorf("IP %s still reserved after delete", lbo.Spec.ClusterIP)
	}
}

func TestRestartAndRepair(t *testing.T) {
	dir := t.TempDir()
	cfg := server.Config{DataDir: dir, BindAddress: "127.0.0.1", DisableAgent: true}
	s := testserver.StartWith(t, cfg)
	ctx := context.Background()
	kept := mustCreate(t, s.Client, svc("kept", corev1.ServiceTypeNodePort, "10.43.9.9", 30999))
	lost := mustCreate(t, s.Client, svc("lost", corev1.ServiceTypeClusterIP, "10.43.9.10"))
	// Simulate a crash that lost a reservation and leaked another.
	if _, err := s.Store().Delete(ctx, serviceip.IPPrefix+lost.Spec.ClusterIP, 0); err != nil {
		t.Fatal(err)
	}
	leak := fmt.Sprintf(`{"namespace":"default","name":"gone","uid":"x","at":%q}`, time.Now().Add(-time.Hour).UTC().Format(time.RFC3339))
	if _, err := s.Store().Create(ctx, serviceip.IPPrefix+"10.43.8.8", []byte(leak)); err != nil {
		t.Fatal(err)
	}
	s.Stop()

	s2 := testserver.StartWith(t, cfg)
	cs := s2.Client
	_, err := create(t, cs, svc("x1", corev1.ServiceTypeClusterIP, kept.Spec.ClusterIP))
	wantInvalid(t, err, "provided IP is already allocated")
	_, err = create(t, cs, svc("x2", corev1.ServiceTypeNodePort, "", 30999))
	wantInvalid(t, err, "provided port is already allocated")
	_, err = create(t, cs, svc("x3", corev1.ServiceTypeClusterIP, "10.43.9.10"))
	wantInvalid(t, err, "provided IP is already allocated")
	got := mustCreate(t, cs, svc("x4", corev1.ServiceTypeClusterIP, "10.43.8.8"))
	if got.Spec.ClusterIP != "10.43.8.8" {
		t.Fatal(got.Spec.ClusterIP)
	}
	k, err := cs.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil || k.Spec.ClusterIP != "10.43.0.1" {
		t.Fatalf("kubernetes service after restart: %v %v", k, err)
	}
}
