package integration_test

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/skiffhq/skiff/internal/nodetest"
	"github.com/skiffhq/skiff/internal/testimages"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/nodeagent/agent"
	"github.com/skiffhq/skiff/nodeagent/proxy"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	podCIDR    = "10.42.247.0/24"
	podGW      = "10.42.247.1" // the bridge's address: the kube-dns endpoint
	clusterDNS = "10.43.0.10"  // the default cluster DNS IP
	bridge     = "skiffdns0"
	// The service proxy's table and dummy link, this package's own.
	proxyTable, proxyLink = "skiff_proxy_dnstest", "skiffdnssvc0"
)

// TestNslookupFromPod runs busybox nslookup in a real pod whose resolv.conf
// names the cluster DNS IP, as every ClusterFirst pod's does. The path is
// the production one: the server publishes kube-system/kube-dns with the
// agent's bridge gateway as endpoint, the agent's nftables proxy DNATs the
// query there, and the add-on answers on the gateway.
func TestNslookupFromPod(t *testing.T) {
	nodetest.Require(t)
	state := nodetest.StateDir(t, nodetest.Busybox)
	ts := testserver.Start(t)
	ctx := context.Background()
	opts := nodetest.AgentOptions("dns-pod-test", state, podCIDR, bridge)
	opts.ProxyMode = agent.ProxyModeNFTables
	opts.Proxy = proxy.Options{Table: proxyTable, Interface: proxyLink}
	const localnet = "/proc/sys/net/ipv4/conf/all/route_localnet"
	if prev, err := os.ReadFile(localnet); err == nil {
		t.Cleanup(func() { _ = os.WriteFile(localnet, prev, 0o644) })
	}
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	a, err := ts.StartAgent(sctx, opts)
	cancel()
	if err != nil {
		t.Fatalf("start agent: %v", err)
	}
	t.Cleanup(func() { cleanupAgent(t, ts, a, opts) })

	const ns = "dnspod"
	if _, err := ts.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, _ = ts.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	web, err := ts.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec:       corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "pg", Port: 5432}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Client.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "db-1", Labels: map[string]string{discoveryv1.LabelServiceName: "db"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("pg"), Port: ptr(int32(5432)), Protocol: ptr(corev1.ProtocolTCP)}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.42.7.9"}, Hostname: ptr("db-0"), Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The bridge (and so the gateway address the add-on binds) appears with
	// the first pod: wait inside the pod until the server answers. busybox
	// nslookup applies the search path only to names without a dot, so
	// "web.dnspod" is asked in the form a libc resolver (ndots:5) expands
	// it to; "web" goes through the pod's search path.
	script := `cat /etc/resolv.conf
i=0; until nslookup web.dnspod.svc.cluster.local >/dev/null 2>&1 || [ $i -gt 100 ]; do i=$((i+1)); sleep 0.2; done
for n in web web.dnspod.svc.cluster.local db.dnspod.svc.cluster.local db-0.db.dnspod.svc.cluster.local; do
  echo "Q $n"; nslookup -type=a $n
done
echo "Q srv"; nslookup -type=srv _http._tcp.web.dnspod.svc.cluster.local
echo "Q srv-headless"; nslookup -type=srv _pg._tcp.db.dnspod.svc.cluster.local
echo "Q END"; sleep 3600`
	if _, err := ts.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "lookup"},
		Spec: corev1.PodSpec{
			NodeName:                      opts.NodeName,
			TerminationGracePeriodSeconds: ptr(int64(1)),
			Containers: []corev1.Container{{
				Name: "main", Image: testimages.Busybox, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", script},
			}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var logs string
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(logs, "Q END") {
		if time.Now().After(deadline) {
			p, _ := ts.Client.CoreV1().Pods(ns).Get(ctx, "lookup", metav1.GetOptions{})
			t.Fatalf("pod never finished its lookups; logs:\n%s\nstatus: %+v", logs, p.Status)
		}
		time.Sleep(500 * time.Millisecond)
		b, err := ts.Client.CoreV1().Pods(ns).GetLogs("lookup", &corev1.PodLogOptions{}).DoRaw(ctx)
		if err == nil {
			logs = string(b)
		}
	}
	t.Logf("pod output:\n%s", logs)
	if !strings.Contains(logs, "nameserver "+clusterDNS) {
		t.Fatalf("resolv.conf does not name %s", clusterDNS)
	}
	sections := map[string]string{}
	for _, part := range strings.Split(logs, "Q ")[1:] {
		name, body, _ := strings.Cut(part, "\n")
		sections[name] = body
	}
	for name, want := range map[string]string{
		"web":                              "Address: " + web.Spec.ClusterIP,
		"web.dnspod.svc.cluster.local":     "Address: " + web.Spec.ClusterIP,
		"db.dnspod.svc.cluster.local":      "Address: 10.42.7.9",
		"db-0.db.dnspod.svc.cluster.local": "Address: 10.42.7.9",
		"srv":                              "80 web.dnspod.svc.cluster.local",
		"srv-headless":                     "5432 db-0.db.dnspod.svc.cluster.local",
	} {
		if !strings.Contains(sections[name], want) {
			t.Errorf("nslookup %s: no %q in\n%s", name, want, sections[name])
		}
	}
	// The Service the server publishes, and the same VIP from the host
	// (the proxy's output DNAT), over UDP and TCP.
	kd, err := ts.Client.CoreV1().Services("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("kube-dns service: %v", err)
	}
	if kd.Spec.ClusterIP != clusterDNS || len(kd.Spec.Ports) != 2 || kd.Labels["k8s-app"] != "kube-dns" {
		t.Fatalf("kube-dns service: %+v", kd)
	}
	for _, proto := range []string{"udp", "tcp"} {
		c := &mdns.Client{Net: proto, Timeout: 2 * time.Second}
		m := new(mdns.Msg)
		m.SetQuestion("web.dnspod.svc.cluster.local.", mdns.TypeA)
		r, _, err := c.Exchange(m, net.JoinHostPort(clusterDNS, "53"))
		if err != nil {
			t.Fatalf("host query over %s to %s: %v", proto, clusterDNS, err)
		}
		if len(r.Answer) != 1 || r.Answer[0].(*mdns.A).A.String() != web.Spec.ClusterIP {
			t.Fatalf("host query over %s: %v", proto, r)
		}
	}
}

// cleanupAgent deletes the pods, stops the agent and sweeps containers,
// network namespaces and the bridge even when the test failed half way.
func cleanupAgent(t *testing.T, ts *testserver.Server, a *agent.Agent, opts agent.Options) {
	ctx := context.Background()
	pods, _ := ts.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	for _, p := range pods.Items {
		_ = ts.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(1))})
	}
	nodetest.Sweep(t, a, opts)
	if err := proxy.Cleanup(opts.Proxy); err != nil {
		t.Errorf("proxy cleanup: %v", err)
	}
}
