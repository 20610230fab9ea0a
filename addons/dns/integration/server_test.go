package integration_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/skiffhq/skiff/internal/testserver"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

func ptr[T any](v T) *T { return &v }

// answers returns the rcode and the answer rdata (last field) of a query.
func ask(t *testing.T, addr, name string, qtype uint16) (int, []string) {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	r, _, err := (&mdns.Client{Timeout: 2 * time.Second}).Exchange(m, addr)
	if err != nil {
		return -1, nil
	}
	var out []string
	for _, rr := range r.Answer {
		f := strings.Fields(rr.String())
		out = append(out, strings.Join(f[4:], " "))
	}
	slices.Sort(out)
	return r.Rcode, out
}

// eventually polls until the query answers rcode with want.
func eventually(t *testing.T, addr, name string, qtype uint16, rcode int, want ...string) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(20 * time.Second)
	for {
		rc, got := ask(t, addr, name, qtype)
		if rc == rcode && slices.Equal(got, want) {
			t.Logf("%s %s answered after %v", name, mdns.TypeToString[qtype], time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s: rcode %d %q, want %d %q", name, mdns.TypeToString[qtype], rc, got, rcode, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestServerDNS(t *testing.T) {
	ts := testserver.Start(t)
	ctx := context.Background()
	d := ts.DNS()
	if d == nil {
		t.Fatal("DNS add-on not started")
	}
	addr := d.Addrs()[0]
	deadline := time.Now().Add(20 * time.Second)
	for !d.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("DNS add-on never became ready (informers not synced: RBAC?)")
		}
		time.Sleep(20 * time.Millisecond)
	}

	k, err := ts.Client.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, addr, "kubernetes.default.svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, k.Spec.ClusterIP)

	const ns = "dnstest"
	if _, err := ts.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, addr, ns+".svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess)

	// A new ClusterIP service resolves (A, SRV, PTR).
	web, err := ts.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, addr, "web.dnstest.svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, web.Spec.ClusterIP)
	eventually(t, addr, "_http._tcp.web.dnstest.svc.cluster.local.", mdns.TypeSRV, mdns.RcodeSuccess, "0 100 80 web.dnstest.svc.cluster.local.")
	rev, _ := mdns.ReverseAddr(web.Spec.ClusterIP)
	eventually(t, addr, rev, mdns.TypePTR, mdns.RcodeSuccess, "web.dnstest.svc.cluster.local.")

	// A headless service with a hand-made EndpointSlice (no selector, so no
	// controller manages it).
	if _, err := ts.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec:       corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "pg", Port: 5432}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, addr, "db.dnstest.svc.cluster.local.", mdns.TypeA, mdns.RcodeNameError)
	if _, err := ts.Client.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "db-1", Labels: map[string]string{discoveryv1.LabelServiceName: "db"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("pg"), Port: ptr(int32(5432)), Protocol: ptr(corev1.ProtocolTCP)}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.42.7.1"}, Hostname: ptr("db-0"), Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}},
			{Addresses: []string{"10.42.7.2"}, Hostname: ptr("db-1"), Conditions: discoveryv1.EndpointConditions{Ready: ptr(false)}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, addr, "db.dnstest.svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, "10.42.7.1")
	eventually(t, addr, "db-0.db.dnstest.svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, "10.42.7.1")
	eventually(t, addr, "db-1.db.dnstest.svc.cluster.local.", mdns.TypeA, mdns.RcodeNameError)
	eventually(t, addr, "_pg._tcp.db.dnstest.svc.cluster.local.", mdns.TypeSRV, mdns.RcodeSuccess, "0 100 5432 db-0.db.dnstest.svc.cluster.local.")

	// ExternalName.
	if _, err := ts.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "alias"},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "web.dnstest.svc.cluster.local"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, addr, "alias.dnstest.svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, web.Spec.ClusterIP, "web.dnstest.svc.cluster.local.")

	// Deleting the service removes its records.
	if err := ts.Client.CoreV1().Services(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, addr, "web.dnstest.svc.cluster.local.", mdns.TypeA, mdns.RcodeNameError)

	// Least privilege: the add-on's identity reads services but not secrets.
	rc := rest.CopyConfig(ts.Config)
	rc.Impersonate = rest.ImpersonationConfig{UserName: "system:skiff-dns"}
	cs := kubernetes.NewForConfigOrDie(rc)
	if _, err := cs.CoreV1().Services("").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("dns identity cannot list services: %v", err)
	}
	if _, err := cs.CoreV1().Secrets("").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("dns identity listing secrets: %v, want Forbidden", err)
	}

	// Metrics are on the server's registry.
	body, err := ts.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, series := range []string{"skiff_dns_requests_total", `skiff_dns_responses_total{rcode="NXDOMAIN"}`, "skiff_dns_request_duration_seconds_bucket"} {
		if !strings.Contains(string(body), series) {
			t.Errorf("/metrics lacks %s", series)
		}
	}
}
