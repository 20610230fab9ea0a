package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/skiffhq/skiff/addons/logging/esapi"
	"github.com/skiffhq/skiff/addons/logging/store"
	"github.com/skiffhq/skiff/internal/chaos"
	"github.com/skiffhq/skiff/internal/multinode"
	"github.com/skiffhq/skiff/internal/nodetest"
	"github.com/skiffhq/skiff/internal/testimages"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// chaosIngressPort is the HA servers' ingress port in this test (on each
// server's own address, in its own namespace).
const chaosIngressPort = 18080

// tally counts a probe's successes and records each failure with its
// time.
type tally struct {
	mu       sync.Mutex
	ok       int
	failures []probeFailure
}

type probeFailure struct {
	at  time.Time
	err string
}

func (tl *tally) record(msg string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if msg == "" {
		tl.ok++
	} else {
		tl.failures = append(tl.failures, probeFailure{time.Now(), msg})
	}
}

// check logs the tally of what (answered as good) and fails t for every
// failure (the first ten shown) and for a load that barely ran.
func (tl *tally) check(t *testing.T, what, good string) {
	t.Helper()
	t.Logf("%s: %d %s, %d failed", what, tl.ok, good, len(tl.failures))
	if tl.ok < 100 {
		t.Errorf("%s: only %d answered: the load did not run", what, tl.ok)
	}
	for i, fl := range tl.failures {
		if i == 10 {
			t.Errorf("... and %d more", len(tl.failures)-10)
			break
		}
		t.Errorf("%s failed at %s: %s", what, fl.at.Format("15:04:05.000"), fl.err)
	}
}

// httpProbe sends GETs through one ingress without pause.
type httpProbe struct {
	tally
	url, host string
	client    *http.Client
}

func (p *httpProbe) run(ctx context.Context) {
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
		req.Host = p.host
		resp, err := p.client.Do(req)
		msg := ""
		if err != nil {
			msg = err.Error()
		} else {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				msg = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
			}
		}
		if ctx.Err() != nil {
			return
		}
		p.record(msg)
		if msg != "" {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// chaosLogSink is the address of the embedded log store (its
// Elasticsearch API) that the agents ship to in this test: the host end
// of instance 14's node network.
const chaosLogSink = "10.250.14.1:19200"

// startLogSink serves a log store of the test's own at chaosLogSink
// until the test ends (the agents retry until it answers).
func startLogSink(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(store.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", chaosLogSink)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	srv := &http.Server{Handler: &esapi.Handler{Store: st}, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		_ = st.Close()
	})
	return st
}

// shippedSeqs counts, per pod, how often each "seq N" line is in the
// store.
func shippedSeqs(ctx context.Context, st *store.Store) (map[string]map[int]int, error) {
	h := &esapi.Handler{Store: st}
	body := `{"size":10000,"query":{"match_all":{}}}`
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/*/_search", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		return nil, fmt.Errorf("search: %d %s", rec.Code, rec.Body.String())
	}
	var res struct {
		Hits struct {
			Hits []struct {
				Source struct {
					Message    string `json:"message"`
					Kubernetes struct {
						PodName string `json:"pod_name"`
					} `json:"kubernetes"`
				} `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
		return nil, err
	}
	out := map[string]map[int]int{}
	for _, h := range res.Hits.Hits {
		var n int
		if _, err := fmt.Sscanf(strings.TrimSpace(h.Source.Message), "seq %d", &n); err != nil {
			continue
		}
		pod := h.Source.Kubernetes.PodName
		if out[pod] == nil {
			out[pod] = map[int]int{}
		}
		out[pod][n]++
	}
	return out, nil
}

// chaosDNSPort is where `skiff dns` answers on each node's address.
const chaosDNSPort = 10053

// startInNode runs `skiff <args>` in node n's network namespace until
// the test ends.
func startInNode(t *testing.T, n *multinode.Node, args ...string) {
	t.Helper()
	log := &syncBuffer{}
	cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + n.NetNS, "--", skiffBin(t)}, args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("skiff %s on %s log:\n%s", args[0], n.Name, tail(log.String(), 3000))
		}
	})
}

// dnsProbe asks one DNS server for a name without pause; a wrong answer
// is a failure.
type dnsProbe struct {
	tally
	server, name, want string
}

func (p *dnsProbe) run(ctx context.Context) {
	cl := &dns.Client{Timeout: 2 * time.Second}
	for ctx.Err() == nil {
		m := new(dns.Msg)
		m.SetQuestion(p.name, dns.TypeA)
		r, _, err := cl.ExchangeContext(ctx, m, p.server)
		msg := ""
		switch {
		case err != nil:
			msg = err.Error()
		case r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1:
			msg = fmt.Sprintf("rcode %s, %d answers", dns.RcodeToString[r.Rcode], len(r.Answer))
		default:
			if a, ok := r.Answer[0].(*dns.A); !ok || a.A.String() != p.want {
				msg = fmt.Sprintf("answer %v, want %s", r.Answer[0], p.want)
			}
		}
		if ctx.Err() != nil {
			return
		}
		p.record(msg)
		time.Sleep(5 * time.Millisecond)
	}
}

// TestChaosRealPods is the real-pod part of the fault suite: three HA
// servers and two agents, each in its own network namespace, on a
// containerd of their own; a two-replica Deployment of the HTTP test
// server behind a Service and an Ingress served by `skiff ingress` on
// each node, and `skiff dns` on each node (node 1's talk to server 1,
// node 2's to server 2). While requests go through both ingresses and
// queries for the Service's name to both DNS servers without pause, and
// a ledger of API writes
// goes through server 2, the suite kills with SIGKILL, in turn, node 1's
// agent, the nodes' containerd, and server 1 with its etcd member, and
// starts each again. Then: not one request or query failed (the pods,
// ingresses and DNS servers never stopped; one whose API server died
// keeps what it knew), every
// acknowledged write is there, the Deployment has exactly its replicas
// with none restarted, and once it is deleted nothing of its pods is left
// on the nodes: no container, network namespace, veth, address or mount.
func TestChaosRealPods(t *testing.T) {
	multinode.Require(t)
	c := multinode.Start(t, multinode.Options{Nodes: 2, Servers: 3, Instance: 14, Bin: skiffBin(t),
		Images: []nodetest.Image{nodetest.HTTPServer, nodetest.Busybox}, PrivateContainerd: true,
		AgentLogsURL: "http://" + chaosLogSink})
	logs := startLogSink(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	s1, s2 := c.HA[0], c.HA[1]
	cs := s2.Client
	ns := "chaos-web"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "web"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](1),
					// One replica per node.
					Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
						RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
							LabelSelector: &metav1.LabelSelector{MatchLabels: labels}, TopologyKey: corev1.LabelHostname,
						}},
					}},
					Containers: []corev1.Container{{
						Name: "web", Image: testimages.HTTPServer, ImagePullPolicy: corev1.PullNever,
						Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: testimages.HTTPServerPort}},
					}},
				},
			},
		},
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A ticker on each node writes numbered lines for the log shippers.
	for i, n := range c.Nodes {
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ticker-%d", i)},
			Spec: corev1.PodSpec{NodeName: n.Name, TerminationGracePeriodSeconds: ptr.To[int64](0), Containers: []corev1.Container{{
				Name: "ticker", Image: testimages.Busybox, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", "i=0; while :; do echo seq $i; i=$((i+1)); sleep 0.05; done"},
			}}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.NetworkingV1().IngressClasses().Create(ctx, &networkingv1.IngressClass{
		ObjectMeta: metav1.ObjectMeta{Name: "skiff"}, Spec: networkingv1.IngressClassSpec{Controller: "skiff.io/ingress-controller"},
	}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	pathType := networkingv1.PathTypePrefix
	if _, err := cs.NetworkingV1().Ingresses(ns).Create(ctx, &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: networkingv1.IngressSpec{IngressClassName: ptr.To("skiff"), Rules: []networkingv1.IngressRule{{
			Host: "chaos.test",
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
				Path: "/", PathType: &pathType,
				Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Name: "http"}}},
			}}}},
		}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	webPods := func() []corev1.Pod {
		l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return nil
		}
		return l.Items
	}
	var before []corev1.Pod
	pollOK(ctx, t, 120*time.Second, func(ctx context.Context) string {
		before = webPods()
		running := 0
		for _, p := range before {
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" && p.DeletionTimestamp == nil {
				running++
			}
		}
		if running != 2 || len(before) != 2 {
			return fmt.Sprintf("%d of %d web pods running; %s", running, len(before), c.Pods(ctx, ns))
		}
		return ""
	})
	// An ingress on each node (as ingress controllers run, on nodes):
	// node 1's watches server 1, which gets killed; node 2's server 2.
	// The same for cluster DNS: `skiff dns` on each node.
	for i, s := range []*multinode.ServerProc{s1, s2} {
		n, kubeconfig := c.Nodes[i], filepath.Join(s.DataDir, "admin.kubeconfig")
		startInNode(t, n, "ingress", "--kubeconfig", kubeconfig, "--bind-address", n.IP,
			"--ingress-http-port", fmt.Sprint(chaosIngressPort), "--ingress-https-port", "0", "--access-log", "", "--health-address", "")
		startInNode(t, n, "dns", "--kubeconfig", kubeconfig, "--cluster-dns", "", "--listen", n.IP,
			"--dns-port", fmt.Sprint(chaosDNSPort), "--no-forward", "--health-address", "")
	}
	svc, err := cs.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dnsProbes := []*dnsProbe{}
	for _, n := range c.Nodes {
		dnsProbes = append(dnsProbes, &dnsProbe{server: net.JoinHostPort(n.IP, fmt.Sprint(chaosDNSPort)),
			name: "web." + ns + ".svc.cluster.local.", want: svc.Spec.ClusterIP})
	}
	probes := []*httpProbe{}
	for _, n := range c.Nodes {
		p := &httpProbe{url: fmt.Sprintf("http://%s:%d/", n.IP, chaosIngressPort), host: "chaos.test",
			client: &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4}}}
		probes = append(probes, p)
	}
	// Both ingresses route before the load starts.
	pollOK(ctx, t, 60*time.Second, func(ctx context.Context) string {
		for _, p := range probes {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
			req.Host = p.host
			resp, err := p.client.Do(req)
			if err != nil {
				return err.Error()
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Sprintf("%s: %d", p.url, resp.StatusCode)
			}
		}
		for _, p := range dnsProbes {
			m := new(dns.Msg)
			m.SetQuestion(p.name, dns.TypeA)
			r, _, err := (&dns.Client{Timeout: 2 * time.Second}).ExchangeContext(ctx, m, p.server)
			if err != nil || len(r.Answer) != 1 {
				return fmt.Sprintf("DNS at %s: %v %v", p.server, err, r)
			}
		}
		return ""
	})

	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, p := range probes {
		wg.Go(func() { p.run(loadCtx) })
	}
	for _, p := range dnsProbes {
		wg.Go(func() { p.run(loadCtx) })
	}
	ledger := &chaos.APILoad{Client: clientForServer(t, s2), Namespace: "chaos-ledger", Workers: 4, Keys: 10, Ledger: chaos.NewLedger(), Retry: 100 * time.Millisecond}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ledger.Namespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { ledger.Run(loadCtx) })
	t.Cleanup(func() { stopLoad(); wg.Wait() })

	type fault struct {
		target   string
		at, back time.Time
	}
	var faults []fault
	time.Sleep(2 * time.Second)

	// 1. Each node's agent in turn.
	for i, n := range c.Nodes {
		f := fault{target: "agent " + n.Name, at: time.Now()}
		if err := syscall.Kill(n.PID(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-n.Done()
		time.Sleep(2 * time.Second)
		if err := c.RestartAgent(i, nil); err != nil {
			t.Fatal(err)
		}
		nodesRenewedAfter(ctx, t, cs, c.NodeNames(), f.at)
		f.back = time.Now()
		faults = append(faults, f)
		time.Sleep(2 * time.Second)
	}

	// 2. The nodes' containerd.
	f := fault{target: "containerd", at: time.Now()}
	if err := c.KillContainerd(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if err := c.RestartContainerd(); err != nil {
		t.Fatal(err)
	}
	f.back = time.Now()
	faults = append(faults, f)
	time.Sleep(2 * time.Second)

	// 3. Server 1 and its etcd member.
	f = fault{target: "server 1 (etcd member)", at: time.Now()}
	s1.Kill()
	time.Sleep(3 * time.Second)
	if err := s1.Restart(); err != nil {
		t.Fatal(err)
	}
	f.back = time.Now()
	faults = append(faults, f)
	time.Sleep(3 * time.Second)
	stopLoad()
	wg.Wait()

	for _, f := range faults {
		t.Logf("fault: %s killed at %s, back at %s", f.target, f.at.Format("15:04:05.000"), f.back.Format("15:04:05.000"))
	}
	for _, p := range probes {
		p.check(t, "ingress "+p.url, "requests answered 200")
	}
	for _, p := range dnsProbes {
		p.check(t, "DNS "+p.server, "queries answered with the ClusterIP")
	}

	// Every line the tickers wrote up to now (their logs as the agents
	// serve them) reaches the store once, agent kills notwithstanding.
	for i := range c.Nodes {
		pod := fmt.Sprintf("ticker-%d", i)
		b, err := cs.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{}).DoRaw(ctx)
		if err != nil {
			t.Fatalf("logs of %s: %v", pod, err)
		}
		last := -1
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var n int
			if _, err := fmt.Sscanf(l, "seq %d", &n); err == nil && n == last+1 {
				last = n
			} else {
				t.Fatalf("%s's log has %q after seq %d: the pod restarted or lost a line", pod, l, last)
			}
		}
		if last < 100 {
			t.Fatalf("%s wrote only %d lines", pod, last+1)
		}
		var missing []int
		var dup int
		for deadline := time.Now().Add(90 * time.Second); ; {
			got, err := shippedSeqs(ctx, logs)
			if err != nil {
				t.Fatal(err)
			}
			missing, dup = nil, 0
			for n := 0; n <= last; n++ {
				switch got[pod][n] {
				case 0:
					missing = append(missing, n)
				case 1:
				default:
					dup++
				}
			}
			if len(missing) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Second)
		}
		t.Logf("%s: %d lines written, %d missing from the store, %d stored twice", pod, last+1, len(missing), dup)
		if len(missing) > 0 {
			t.Errorf("%s: %d of its %d lines never reached the store (first %v)", pod, len(missing), last+1, missing[:min(len(missing), 10)])
		}
		if dup > 0 {
			t.Errorf("%s: %d lines stored more than once", pod, dup)
		}
	}

	// The ledger, read back through the restarted member's server.
	ledger.Client = clientForServer(t, s1)
	vctx, vcancel := context.WithTimeout(ctx, time.Minute)
	if err := ledger.Verify(vctx); err != nil {
		t.Fatal(err)
	}
	vcancel()
	acked, unknown, _, violations := ledger.Ledger.Counts()
	t.Logf("ledger: %d writes acknowledged, %d unknown outcome", acked, unknown)
	if acked < 20 {
		t.Errorf("only %d writes acknowledged: the ledger load did not run", acked)
	}
	for _, v := range violations {
		t.Errorf("ledger: %s", v)
	}

	// The Deployment: exactly its two pods, the same ones, not restarted.
	after := webPods()
	if len(after) != 2 {
		t.Errorf("web pods after the faults: %s", c.Pods(ctx, ns))
	}
	uids := map[string]bool{}
	for _, p := range before {
		uids[string(p.UID)] = true
	}
	for _, p := range after {
		if !uids[string(p.UID)] {
			t.Errorf("pod %s is new: a web pod was replaced during the faults", p.Name)
		}
		for _, st := range p.Status.ContainerStatuses {
			if st.RestartCount != 0 {
				t.Errorf("pod %s: container restarted %d times", p.Name, st.RestartCount)
			}
		}
	}

	// Leak audit: the Deployment and the tickers deleted, nothing of
	// their pods remains.
	all, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var nss []string
	for _, p := range all.Items {
		for _, n := range c.Nodes {
			if sb := sandboxRecord(filepath.Join(n.DataDir, "agent"), string(p.UID)); sb["netns"] != "" {
				nss = append(nss, sb["netns"])
			}
		}
	}
	if len(nss) != len(all.Items) || len(nss) != 4 {
		t.Errorf("found %d sandbox records with a namespace for %d pods, want 4", len(nss), len(all.Items))
	}
	if err := cs.AppsV1().Deployments(ns).Delete(ctx, "web", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}); err != nil {
		t.Fatal(err)
	}
	for i := range c.Nodes {
		if err := cs.CoreV1().Pods(ns).Delete(ctx, fmt.Sprintf("ticker-%d", i), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	leaks := func(ctx context.Context) string {
		if l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) != 0 {
			return fmt.Sprintf("pods remain (%v)", err)
		}
		if n, err := c.Containers(ctx); err != nil || n != 0 {
			return fmt.Sprintf("%d containers remain (%v)", n, err)
		}
		for _, nsPath := range nss {
			if _, err := os.Stat(nsPath); !os.IsNotExist(err) {
				return "network namespace " + nsPath + " remains"
			}
		}
		for _, n := range c.Nodes {
			state := filepath.Join(n.DataDir, "agent")
			if held := heldAddresses(state, ""); held != 0 {
				return fmt.Sprintf("node %s: %d pod addresses still held", n.Name, held)
			}
			out, err := exec.CommandContext(ctx, "ip", "-n", n.NetNS, "-o", "link", "show", "type", "veth").CombinedOutput()
			if err != nil {
				return fmt.Sprintf("ip link in %s: %v %s", n.NetNS, err, out)
			}
			// eth0 is the node's own link to the harness bridge.
			for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if f := strings.Fields(l); len(f) > 1 && !strings.HasPrefix(f[1], "eth0@") {
					return fmt.Sprintf("node %s: pod veth remains: %s", n.Name, l)
				}
			}
		}
		mounts, _ := os.ReadFile("/proc/self/mountinfo")
		for _, p := range all.Items {
			if strings.Contains(string(mounts), string(p.UID)) {
				return fmt.Sprintf("a mount of pod %s remains", p.Name)
			}
		}
		return ""
	}
	for deadline := time.Now().Add(2 * time.Minute); ; {
		lctx, lcancel := context.WithTimeout(ctx, 15*time.Second)
		left := leaks(lctx)
		lcancel()
		if left == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the Deployment's deletion: %s; pods %s", left, c.Pods(ctx, ns))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// clientForServer is a client of one HA server alone (no failover).
func clientForServer(t *testing.T, s *multinode.ServerProc) kubernetes.Interface {
	t.Helper()
	return clientFor(t, &cluster{kubeconfig: filepath.Join(s.DataDir, "admin.kubeconfig")})
}
