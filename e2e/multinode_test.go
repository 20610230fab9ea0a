package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	ctrdnetns "github.com/containerd/containerd/v2/pkg/netns"
	cnins "github.com/containernetworking/plugins/pkg/ns"
	"github.com/skiffhq/skiff/internal/multinode"
	"github.com/skiffhq/skiff/internal/nodetest"
	"github.com/skiffhq/skiff/internal/testimages"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
)

// TestMultiNodePodNetwork runs two `skiff agent` processes, each in its own
// network namespace (internal/multinode), and checks the host-gw pod
// network end to end: a client pod on node 1 reaches a ClusterIP Service
// whose two backends run on node 1 and node 2 and gets answers from both,
// reaches the node-2 backend by its pod IP, and reaches an address outside
// the cluster CIDR (an HTTP server of this test on the host bridge)
// masqueraded to its node's address.
func TestMultiNodePodNetwork(t *testing.T) {
	multinode.Require(t)
	c := multinode.Start(t, multinode.Options{Nodes: 2, Instance: 7, Bin: skiffBin(t),
		Images: []nodetest.Image{nodetest.Busybox, nodetest.HTTPServer}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	n1, n2 := c.Nodes[0].Name, c.Nodes[1].Name

	// Node 1 joined with a join token: its certificate came through a CSR
	// of the bootstrap token's user, and it keeps its own kubeconfig.
	if _, err := os.Stat(filepath.Join(c.Nodes[0].DataDir, "agent", "kubeconfig")); err != nil {
		t.Fatalf("the node that joined with a token has no kubeconfig of its own: %v", err)
	}
	csrs, err := c.Client.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	joined := false
	for _, r := range csrs.Items {
		joined = joined || (strings.HasPrefix(r.Spec.Username, "system:bootstrap:") && len(r.Status.Certificate) > 0)
	}
	if !joined {
		t.Fatalf("no signed CSR of a bootstrap token among %d", len(csrs.Items))
	}

	// host-gw: each node's pod CIDR is routed via the other node's address.
	nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cidrs := map[string]string{}
	for _, n := range nodes.Items {
		cidrs[n.Name] = n.Spec.PodCIDR
	}
	if cidrs[n1] == "" || cidrs[n2] == "" || cidrs[n1] == cidrs[n2] {
		t.Fatalf("pod CIDRs %v: want two distinct ranges", cidrs)
	}

	// A plain HTTP server outside the cluster CIDR, on the host bridge:
	// it records the source address the client pod's request arrives from.
	var mu sync.Mutex
	var seenFrom []string
	ln, err := net.Listen("tcp4", net.JoinHostPort(c.HostIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		mu.Lock()
		seenFrom = append(seenFrom, host)
		mu.Unlock()
		fmt.Fprintln(w, "outside")
	})}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	ns := "multinode"
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	echo := func(name, node string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "echo"}},
			Spec: corev1.PodSpec{NodeName: node, TerminationGracePeriodSeconds: new(int64), Containers: []corev1.Container{{
				Name: "echo", Image: testimages.HTTPServer, ImagePullPolicy: corev1.PullNever,
				Ports: []corev1.ContainerPort{{ContainerPort: testimages.HTTPServerPort}},
			}}},
		}
	}
	for _, p := range []*corev1.Pod{echo("echo-1", n1), echo("echo-2", n2)} {
		if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	svc, err := c.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "echo"}, Ports: []corev1.ServicePort{{
			Port: 80, TargetPort: intstr.FromInt32(testimages.HTTPServerPort),
		}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ips := waitPodIPs(ctx, t, c, ns, "echo-1", "echo-2")
	for name, node := range map[string]string{"echo-1": n1, "echo-2": n2} {
		if _, cidr, _ := net.ParseCIDR(cidrs[node]); !cidr.Contains(net.ParseIP(ips[name])) {
			t.Fatalf("%s has IP %s, outside its node's pod CIDR %s", name, ips[name], cidrs[node])
		}
	}

	// The client asks the ClusterIP, the node-2 pod IP and the outside
	// server in a loop and prints every answer on one line.
	script := fmt.Sprintf(`get() { printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 $1 $2 | tail -n 1; }
while true; do
  echo "vip $(get %[1]s 80)"
  echo "podip $(get %[2]s %[3]d)"
  echo "outside $(get %[4]s %[5]s)"
  sleep 0.2
done`, svc.Spec.ClusterIP, ips["echo-2"], testimages.HTTPServerPort, c.HostIP, port)
	client := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "client"},
		Spec: corev1.PodSpec{NodeName: n1, TerminationGracePeriodSeconds: new(int64), Containers: []corev1.Container{{
			Name: "client", Image: testimages.Busybox, ImagePullPolicy: corev1.PullNever,
			Command: []string{"sh", "-c", script},
		}}},
	}
	if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, client, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	clientIP := waitPodIPs(ctx, t, c, ns, "client")["client"]

	var logs string
	err = wait.PollUntilContextTimeout(ctx, time.Second, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		b, err := c.Client.CoreV1().Pods(ns).GetLogs("client", &corev1.PodLogOptions{}).DoRaw(cctx)
		if err != nil {
			logs = err.Error()
			return false, nil
		}
		logs = string(b)
		mu.Lock()
		outside := len(seenFrom) > 0
		mu.Unlock()
		return strings.Contains(logs, "vip hostname=echo-1 ") && strings.Contains(logs, "vip hostname=echo-2 ") &&
			strings.Contains(logs, "podip hostname=echo-2 ") && strings.Contains(logs, "outside outside") && outside, nil
	})
	if len(logs) > 3000 {
		logs = logs[len(logs)-3000:]
	}
	if err != nil {
		t.Fatalf("client on %s did not reach both backends through ClusterIP %s, echo-2 at %s and the outside server (%v); pods %s; client log tail:\n%s",
			n1, svc.Spec.ClusterIP, ips["echo-2"], err, c.Pods(ctx, ns), logs)
	}

	// Node 1 itself (not a pod: an ingress, a probe, a client on the
	// node) reaches echo-2 on node 2 by pod IP and both backends through
	// the ClusterIP; node 2's guard admits it because node 1 SNATs it to
	// its pod gateway.
	fromNode := func(url string) string {
		got, err := getInNetNS(ctx, c.Nodes[0].NetNS, url)
		if err != nil {
			return "error: " + err.Error()
		}
		return got
	}
	if got := fromNode(fmt.Sprintf("http://%s:%d/", ips["echo-2"], testimages.HTTPServerPort)); !strings.Contains(got, "hostname=echo-2 ") {
		t.Errorf("node 1 to echo-2's pod IP on node 2: %q", got)
	}
	backends := map[string]bool{}
	for i := 0; i < 40 && len(backends) < 2; i++ {
		got := fromNode(fmt.Sprintf("http://%s/", svc.Spec.ClusterIP))
		for _, b := range []string{"echo-1", "echo-2"} {
			if strings.Contains(got, "hostname="+b+" ") {
				backends[b] = true
			}
		}
	}
	if len(backends) != 2 {
		t.Errorf("node 1 through ClusterIP %s reached %v, want both backends", svc.Spec.ClusterIP, backends)
	}

	mu.Lock()
	defer mu.Unlock()
	for _, from := range seenFrom {
		if from != c.Nodes[0].IP {
			t.Errorf("outside server saw a request from %s, want the client's node address %s (masquerade; client pod IP %s)", from, c.Nodes[0].IP, clientIP)
		}
	}
}

// getInNetNS GETs url over a connection made in the named network
// namespace (a node of the harness) and returns the body.
func getInNetNS(ctx context.Context, netns, url string) (string, error) {
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var conn net.Conn
		err := ctrdnetns.LoadNetNS("/run/netns/" + netns).Do(func(cnins.NetNS) error {
			var err error
			conn, err = (&net.Dialer{Timeout: 3 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return conn, err
	}}
	defer tr.CloseIdleConnections()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// waitPodIPs waits until the pods run and returns their IPs by name.
func waitPodIPs(ctx context.Context, t *testing.T, c *multinode.Cluster, ns string, names ...string) map[string]string {
	t.Helper()
	ips := map[string]string{}
	err := wait.PollUntilContextTimeout(ctx, 300*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		for _, name := range names {
			p, err := c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil || p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
				return false, nil
			}
			ips[name] = p.Status.PodIP
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("pods %v not running: %v; pods %s", names, err, c.Pods(ctx, ns))
	}
	return ips
}
