package proxy_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/nodetest"
	"github.com/skiffhq/skiff/internal/testimages"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/nodeagent/agent"
	"github.com/skiffhq/skiff/nodeagent/network"
	"github.com/skiffhq/skiff/nodeagent/proxy"
	"github.com/skiffhq/skiff/nodeagent/runtime"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// This package's own pod range, bridge, table and dummy link, so that it
// never meets another test's.
const (
	podCIDR = "10.42.248.0/24"
	bridge  = "skiffpx0"
	table   = "skiff_proxy_test"
	dummy   = "skiffpxsvc0"
)

type env struct {
	t        *testing.T
	srv      *testserver.Server
	agent    *agent.Agent
	opts     agent.Options
	popts    proxy.Options
	nodeName string
	// containers are the IDs of the test's containers: cleanup checks
	// that none of their shims outlives them.
	containers []string
}

func setup(t *testing.T) *env {
	t.Helper()
	// Root also for nftables.
	nodetest.Require(t)
	state := nodetest.StateDir(t, nodetest.Busybox, nodetest.HTTPServer)
	e := &env{t: t, srv: testserver.Start(t), nodeName: fmt.Sprintf("proxy-test-%d", time.Now().UnixNano()%1e6)}
	e.opts = nodetest.AgentOptions(e.nodeName, state, podCIDR, bridge)
	// The agent runs the proxy with its node identity (the node authorizer
	// must let it list and watch Services and EndpointSlices).
	e.popts = proxy.Options{Table: table, Interface: dummy}
	e.opts.ProxyMode, e.opts.Proxy = agent.ProxyModeNFTables, e.popts
	// The proxy turns route_localnet on for localhost NodePorts (as
	// upstream, for good); the test puts back what it found.
	const localnet = "/proc/sys/net/ipv4/conf/all/route_localnet"
	if prev, err := os.ReadFile(localnet); err == nil {
		t.Cleanup(func() { _ = os.WriteFile(localnet, prev, 0o644) })
	}
	t.Cleanup(e.cleanup)
	if err := e.startAgent(); err != nil {
		t.Fatal(err)
	}
	return e
}

// startAgent starts the node agent with e.opts (again, after a Stop).
func (e *env) startAgent() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, err := e.srv.StartAgent(ctx, e.opts)
	if err != nil {
		return fmt.Errorf("start agent: %w", err)
	}
	e.agent = a
	return nil
}

// cleanup removes the proxy's table and link, the test's pods, containers,
// network namespaces and bridge, even when the test failed half way.
func (e *env) cleanup() {
	ctx := context.Background()
	pods, _ := e.srv.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	for _, p := range pods.Items {
		_ = e.srv.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](1)})
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && e.agent != nil && len(e.ours(e.agent.Runtime())) > 0 {
		time.Sleep(200 * time.Millisecond)
	}
	if e.agent != nil {
		e.agent.Stop()
	}
	if err := proxy.Cleanup(e.popts); err != nil {
		e.t.Errorf("proxy cleanup: %v", err)
	}
	if rt, err := runtime.New(ctx, runtime.Options{}); err == nil {
		for _, c := range e.ours(rt) {
			_ = rt.Remove(ctx, c.ID)
		}
		rt.Close()
	}
	nm, err := network.New(network.Options{StateDir: filepath.Join(e.opts.StateDir, "network"), PodCIDR: podCIDR, Bridge: bridge, NetNSDir: e.opts.NetNSDir})
	if err == nil {
		ents, _ := os.ReadDir(filepath.Join(e.opts.StateDir, "pods"))
		for _, ent := range ents {
			_ = nm.Teardown(ctx, ent.Name(), "", "", "", nil)
		}
		nss, _ := os.ReadDir(e.opts.NetNSDir)
		for _, ns := range nss {
			_ = exec.Command("umount", filepath.Join(e.opts.NetNSDir, ns.Name())).Run()
		}
		if err := nm.Destroy(); err != nil {
			e.t.Errorf("destroy network: %v", err)
		}
	}
	e.checkNoShims()
}

// noteContainers records the IDs of the test's containers (see
// checkNoShims).
func (e *env) noteContainers() {
	for _, c := range e.ours(e.agent.Runtime()) {
		e.containers = append(e.containers, c.ID)
	}
}

// checkNoShims fails the test when a containerd shim of one of its
// removed containers still runs (a removal cancelled half way leaked
// them), and kills it: it has no task nor container left to serve.
func (e *env) checkNoShims() {
	deadline := time.Now().Add(15 * time.Second)
	for _, id := range e.containers {
		for {
			pids := shimsOf(id)
			if len(pids) == 0 {
				break
			}
			if time.Now().After(deadline) {
				e.t.Errorf("container %s is removed, but its shim still runs (pids %v, killed now)", id, pids)
				for _, pid := range pids {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// shimsOf lists the pids of the containerd shims started for container id.
func shimsOf(id string) []int {
	pids, _ := runtime.ShimPIDs(id)
	return pids
}

func (e *env) ours(rt *runtime.Runtime) []runtime.Container {
	if rt == nil {
		return nil
	}
	cs, _ := rt.List(context.Background())
	var out []runtime.Container
	for _, c := range cs {
		if strings.HasPrefix(c.Labels[runtime.LabelLogPath], e.opts.PodLogDir) {
			out = append(out, c)
		}
	}
	return out
}

func (e *env) createPod(name string, labels map[string]string, c corev1.Container) {
	e.t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: labels},
		Spec: corev1.PodSpec{NodeName: e.nodeName, TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{c}},
	}
	_, _ = e.srv.Client.CoreV1().ServiceAccounts("default").Create(context.Background(),
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := e.srv.Client.CoreV1().Pods("default").Create(context.Background(), p, metav1.CreateOptions{})
		if err == nil {
			return
		}
		if !apierrors.IsForbidden(err) || time.Now().After(deadline) {
			e.t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (e *env) waitReady(name string) *corev1.Pod {
	e.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var p *corev1.Pod
	for time.Now().Before(deadline) {
		var err error
		p, err = e.srv.Client.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
		if err == nil && p.Status.PodIP != "" {
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					return p
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.t.Fatalf("pod %s never ready: %+v", name, p.Status)
	return nil
}

func (e *env) createService(s *corev1.Service) *corev1.Service {
	e.t.Helper()
	s.Namespace = "default"
	out, err := e.srv.Client.CoreV1().Services("default").Create(context.Background(), s, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// waitEndpoints waits for the EndpointSlice controller to list n ready
// endpoints for the service.
func (e *env) waitEndpoints(svc string, n int) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	got := -1
	for time.Now().Before(deadline) {
		l, err := e.srv.Client.DiscoveryV1().EndpointSlices("default").List(context.Background(),
			metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
		if err == nil && len(l.Items) > 0 {
			got = 0
			for _, s := range l.Items {
				for _, ep := range s.Endpoints {
					if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
						got++
					}
				}
			}
			if got == n {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.t.Fatalf("service %s: %d ready endpoints, want %d", svc, got, n)
}

// execIn runs a shell command in a pod with the real kubectl (through the
// API server's pods/exec and the agent).
func (e *env) execIn(ctx context.Context, pod, script string) ([]byte, error) {
	return exec.CommandContext(ctx, "kubectl", "--kubeconfig", e.srv.Kubeconfig(), "exec", pod, "--", "sh", "-c", script).CombinedOutput()
}

var httpClient = &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// get returns the answering pod's hostname.
func get(url string) (string, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	return hostOf(b), nil
}

// hits polls url until every one of want answered (deadline 20s) and
// returns who answered.
func hits(t *testing.T, url string, want ...string) map[string]int {
	t.Helper()
	return askUntil(t, "GET "+url, func() (string, error) { return get(url) }, want...)
}

// askUntil calls ask until every one of want answered (deadline 20 s) and
// returns who answered; what names the request in a failure.
func askUntil(t *testing.T, what string, ask func() (string, error), want ...string) map[string]int {
	t.Helper()
	seen := map[string]int{}
	var last error
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		h, err := ask()
		if err != nil {
			last = err
			time.Sleep(50 * time.Millisecond)
			continue
		}
		seen[h]++
		all := true
		for _, w := range want {
			all = all && seen[w] > 0
		}
		if all {
			return seen
		}
	}
	t.Fatalf("%s: answers %v, want all of %v (last error %v)", what, seen, want, last)
	return nil
}

// hostOf is the hostname in a test server's answer ("hostname=NAME ...").
func hostOf(body []byte) string {
	host, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimSpace(string(body)), "hostname="), " ")
	return host
}

func TestServicesOnRealPods(t *testing.T) {
	e := setup(t)
	web := corev1.Container{Name: "web", Image: testimages.HTTPServer, ImagePullPolicy: corev1.PullNever}
	labels := map[string]string{"app": "web"}
	e.createPod("web-1", labels, web)
	e.createPod("web-2", labels, web)
	e.createPod("client", nil, corev1.Container{Name: "c", Image: testimages.Busybox, ImagePullPolicy: corev1.PullNever,
		Command: []string{"sleep", "3600"}})
	// A busybox httpd that is its own service's only endpoint (hairpin).
	e.createPod("self", map[string]string{"app": "self"}, corev1.Container{Name: "c", Image: testimages.Busybox, ImagePullPolicy: corev1.PullNever,
		Command: []string{"sh", "-c", "mkdir -p /www && echo i am self > /www/index.html && exec httpd -f -p 8080 -h /www"}})
	self := e.createService(&corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "self"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "self"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	})
	svc := e.createService(&corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: labels,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(testimages.HTTPServerPort)}}},
	})
	sticky := e.createService(&corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "sticky"},
		Spec: corev1.ServiceSpec{Selector: labels, SessionAffinity: corev1.ServiceAffinityClientIP,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(testimages.HTTPServerPort)}}},
	})
	udpSvc := e.createService(&corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "udp"},
		Spec: corev1.ServiceSpec{Selector: labels,
			Ports: []corev1.ServicePort{{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: intstr.FromInt32(testimages.HTTPServerPort)}}},
	})
	empty := e.createService(&corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "empty"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "nothing"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	})
	e.waitReady("web-1")
	e.waitReady("web-2")
	e.waitReady("client")
	e.waitReady("self")
	e.waitEndpoints("self", 1)
	e.waitEndpoints("web", 2)
	e.waitEndpoints("sticky", 2)
	e.waitEndpoints("udp", 2)
	e.noteContainers()
	vip := "http://" + net.JoinHostPort(svc.Spec.ClusterIP, "80") + "/"

	t.Run("ClusterIP from the host reaches both pods", func(t *testing.T) {
		hits(t, vip, "web-1", "web-2")
	})
	t.Run("ClusterIP from a pod", func(t *testing.T) {
		var out []byte
		var err error
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			out, err = e.execIn(ctx, "client", fmt.Sprintf(`printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 %s 80`, svc.Spec.ClusterIP))
			cancel()
			if err == nil && strings.Contains(string(out), "hostname=web-") {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("nc %s in pod: %v: %s", vip, err, out)
	})
	t.Run("hairpin: a pod reaches itself through its service", func(t *testing.T) {
		var out []byte
		var err error
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			out, err = e.execIn(ctx, "self", fmt.Sprintf(`printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 %s 80`, self.Spec.ClusterIP))
			cancel()
			if err == nil && strings.Contains(string(out), "i am self") {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("hairpin: %v: %s", err, out)
	})
	t.Run("sessionAffinity ClientIP keeps one backend", func(t *testing.T) {
		url := "http://" + net.JoinHostPort(sticky.Spec.ClusterIP, "80") + "/"
		first := ""
		for i := 0; i < 30; i++ {
			h, err := get(url)
			if err != nil {
				if first == "" {
					time.Sleep(100 * time.Millisecond)
					i--
					continue
				}
				t.Fatal(err)
			}
			if first == "" {
				first = h
			} else if h != first {
				t.Fatalf("request %d went to %s, the first to %s", i, h, first)
			}
		}
	})
	t.Run("NodePort on 127.0.0.1", func(t *testing.T) {
		np := svc.Spec.Ports[0].NodePort
		if np == 0 {
			t.Fatal("no node port allocated")
		}
		hits(t, fmt.Sprintf("http://127.0.0.1:%d/", np), "web-1", "web-2")
	})
	t.Run("no endpoints: refused at once", func(t *testing.T) {
		addr := net.JoinHostPort(empty.Spec.ClusterIP, "80")
		deadline := time.Now().Add(20 * time.Second)
		for {
			start := time.Now()
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if c != nil {
				c.Close()
			}
			if errors.Is(err, syscall.ECONNREFUSED) {
				if d := time.Since(start); d > 2*time.Second {
					t.Fatalf("refused only after %v", d)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("dial %s: %v, want connection refused", addr, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	t.Run("agent and proxy restart keep an open connection", func(t *testing.T) {
		// One keep-alive connection through the VIP, asked again while
		// the agent is down and after a new agent (and proxy) synced: the
		// stopped proxy leaves its table, and the new one must not cut
		// established flows (no conntrack flush, no re-pick of a backend).
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(svc.Spec.ClusterIP, "80"), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		br := bufio.NewReader(conn)
		ask := func(when string) string {
			t.Helper()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: web\r\n\r\n"); err != nil {
				t.Fatalf("%s: write on the open connection: %v", when, err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("%s: read on the open connection: %v", when, err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || resp.Close {
				t.Fatalf("%s: status %d, close %v, body %q, err %v", when, resp.StatusCode, resp.Close, b, err)
			}
			return hostOf(b)
		}
		backend := ask("before the restart")
		e.agent.Stop()
		e.agent = nil
		if got := ask("agent stopped"); got != backend {
			t.Fatalf("agent stopped: answered by %s, want %s (the connection's backend)", got, backend)
		}
		if err := e.startAgent(); err != nil {
			t.Fatal(err)
		}
		// New connections work once the new proxy synced...
		hits(t, vip, "web-1", "web-2")
		// ...and the old one still reaches its backend.
		if got := ask("after the restart"); got != backend {
			t.Fatalf("after the restart: answered by %s, want %s (the connection's backend)", got, backend)
		}
	})
	t.Run("removed endpoint gets no traffic", func(t *testing.T) {
		// A UDP flow (one source port, kept alive) that conntrack DNATed
		// to web-2: once web-2 is gone the proxy deletes the flow's
		// conntrack entry, so the next datagram is DNATed anew, to web-1.
		// Without that the entry, refreshed by the client, would keep
		// sending to the dead address for as long as it talks. web-2
		// leaves while the agent is down: the new proxy's first sync
		// never saw it, and must find the flow all the same.
		udpAddr := net.JoinHostPort(udpSvc.Spec.ClusterIP, "53")
		var flow net.Conn
		askUDP := func(c net.Conn) (string, error) {
			_ = c.SetDeadline(time.Now().Add(300 * time.Millisecond))
			if _, err := c.Write([]byte("who")); err != nil {
				return "", err
			}
			buf := make([]byte, 256)
			n, err := c.Read(buf)
			if err != nil {
				return "", err
			}
			return hostOf(buf[:n]), nil
		}
		for i := 0; flow == nil; i++ {
			if i == 200 {
				t.Fatalf("no UDP flow through %s reached web-2", udpAddr)
			}
			c, err := net.Dial("udp4", udpAddr)
			if err != nil {
				t.Fatal(err)
			}
			if h, err := askUDP(c); err == nil && h == "web-2" {
				flow = c
				break
			}
			c.Close()
		}
		defer flow.Close()
		stopKeep := make(chan struct{})
		keepDone := make(chan struct{})
		go func() { // the client keeps talking, so the entry stays fresh
			defer close(keepDone)
			for {
				select {
				case <-stopKeep:
					return
				case <-time.After(200 * time.Millisecond):
					_, _ = flow.Write([]byte("keep"))
				}
			}
		}()
		e.agent.Stop()
		e.agent = nil
		if err := e.srv.Client.CoreV1().Pods("default").Delete(context.Background(), "web-2", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitEndpoints("web", 1)
		e.waitEndpoints("udp", 1)
		if err := e.startAgent(); err != nil {
			t.Fatal(err)
		}
		close(stopKeep)
		<-keepDone
		moved := ""
		for deadline := time.Now().Add(10 * time.Second); moved != "web-1" && time.Now().Before(deadline); {
			moved, _ = askUDP(flow)
		}
		if moved != "web-1" {
			t.Errorf("the UDP flow from %s still does not reach web-1 after web-2 left (last answer %q): stale conntrack entry", flow.LocalAddr(), moved)
		}
		// Once the proxy has caught up, 30 requests in a row all reach web-1.
		deadline := time.Now().Add(10 * time.Second)
		streak := 0
		for streak < 30 {
			if time.Now().After(deadline) {
				t.Fatalf("traffic still reaches a removed endpoint (streak %d)", streak)
			}
			h, err := get(vip)
			if err == nil && h == "web-1" {
				streak++
			} else {
				streak = 0
			}
		}
	})
	t.Run("cleanup leaves no table", func(t *testing.T) {
		if ok, err := proxy.TableExists(table); err != nil || !ok {
			t.Fatalf("table before cleanup: %v %v", ok, err)
		}
		// Stopping the agent leaves the table (services outlive an agent
		// restart); Cleanup removes it.
		e.agent.Stop()
		e.agent = nil
		if ok, err := proxy.TableExists(table); err != nil || !ok {
			t.Fatalf("table after agent stop: %v %v", ok, err)
		}
		if err := proxy.Cleanup(e.popts); err != nil {
			t.Fatal(err)
		}
		if ok, err := proxy.TableExists(table); err != nil || ok {
			t.Fatalf("table after cleanup: %v %v", ok, err)
		}
		if _, err := net.InterfaceByName(dummy); err == nil {
			t.Fatalf("link %s still there", dummy)
		}
	})
}
