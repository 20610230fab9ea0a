package integration_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/nodetest"
	"github.com/skiffhq/skiff/internal/testimages"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/nodeagent/agent"
	"github.com/skiffhq/skiff/nodeagent/network"
	"github.com/skiffhq/skiff/nodeagent/runtime"
	"github.com/skiffhq/skiff/server"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	podCIDR = "10.42.247.0/24"
	podGW   = "10.42.247.1" // the bridge's address: where the pods' nameserver points
	bridge  = "skiffdns0"
)

// TestNslookupFromPod runs busybox nslookup in a real pod. Nothing routes
// pod traffic to the cluster DNS service IP yet (no service proxy), so the
// server is told --cluster-dns <bridge gateway>: the node agent writes that
// address into the pod's resolv.conf and the DNS add-on binds it once the
// agent has created the bridge.
func TestNslookupFromPod(t *testing.T) {
	nodetest.Require(t)
	state := nodetest.StateDir(t, nodetest.Busybox)
	ts := testserver.Start(t, func(c *server.Config) { c.ClusterDNS = podGW })
	ctx := context.Background()
	opts := nodetest.AgentOptions("dns-pod-test", state, podCIDR, bridge)
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
	if !strings.Contains(logs, "nameserver "+podGW) {
		t.Fatalf("resolv.conf does not name %s", podGW)
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
}

// cleanupAgent deletes the pods, stops the agent and sweeps containers,
// network namespaces and the bridge even when the test failed half way.
func cleanupAgent(t *testing.T, ts *testserver.Server, a *agent.Agent, opts agent.Options) {
	ctx := context.Background()
	pods, _ := ts.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	for _, p := range pods.Items {
		_ = ts.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(1))})
	}
	ours := func(rt *runtime.Runtime) []runtime.Container {
		cs, _ := rt.List(ctx)
		var out []runtime.Container
		for _, c := range cs {
			if strings.HasPrefix(c.Labels[runtime.LabelLogPath], opts.PodLogDir) {
				out = append(out, c)
			}
		}
		return out
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && a.Runtime() != nil && len(ours(a.Runtime())) > 0 {
		time.Sleep(200 * time.Millisecond)
	}
	a.Stop()
	if rt, err := runtime.New(ctx, runtime.Options{}); err == nil {
		for _, c := range ours(rt) {
			_ = rt.Remove(ctx, c.ID)
		}
		rt.Close()
	}
	nm, err := network.New(network.Options{StateDir: filepath.Join(opts.StateDir, "network"), PodCIDR: podCIDR, Bridge: bridge, NetNSDir: opts.NetNSDir})
	if err != nil {
		return
	}
	ents, _ := os.ReadDir(filepath.Join(opts.StateDir, "pods"))
	for _, ent := range ents {
		_ = nm.Teardown(ctx, ent.Name(), "", "", "", nil)
	}
	nss, _ := os.ReadDir(opts.NetNSDir)
	for _, n := range nss {
		_ = exec.Command("umount", filepath.Join(opts.NetNSDir, n.Name())).Run()
	}
	if err := nm.Destroy(); err != nil {
		t.Errorf("destroy network: %v", err)
	}
}
