package chaos

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/skiffhq/skiff/internal/harness"
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

// Ports the real-pod run uses on each node's own address, in the node's
// network namespace, and on the host end of the node network.
const (
	podsIngressPort = 18080
	podsDNSPort     = 10053
	podsLogSinkPort = 19200
)

// PodsConfig is the real-pod fault run: three HA servers and two agents
// of multinode instance Instance, on a containerd of their own.
type PodsConfig struct {
	// Bin is the skiff binary the servers, agents, ingresses and DNS
	// servers run.
	Bin      string
	Instance int
}

// PodsReport is what the real-pod run found. Broken lists every promise
// it saw broken.
type PodsReport struct {
	Faults             []Fault  `json:"faults"`
	IngressAnswered    int      `json:"ingress_requests_answered"`
	IngressFailures    []string `json:"ingress_failures"`
	DNSAnswered        int      `json:"dns_queries_answered"`
	DNSFailures        []string `json:"dns_failures"`
	LogLinesWritten    int      `json:"log_lines_written"`
	LogLinesLost       int      `json:"log_lines_lost"`
	LogLinesDuplicated int      `json:"log_lines_stored_twice"`
	// LogProblems are tickers whose own log (as the agent serves it) is
	// out of sequence: the pod restarted or its runtime lost a line.
	LogProblems     []string `json:"log_problems,omitempty"`
	OpsAcknowledged int64    `json:"operations_acknowledged"`
	OpsUnknown      int64    `json:"operations_unknown_outcome"`
	Violations      []string `json:"violations,omitempty"`
	// PodChanges are the Deployment's pods replaced, restarted, missing
	// or extra after the faults.
	PodChanges []string `json:"pod_changes,omitempty"`
	// LeakedResources is what was left of the pods on the nodes two
	// minutes after their deletion: containers, network namespaces, pod
	// addresses, veths, mounts.
	LeakedResources []string `json:"leaked_resources"`
}

// minAnswered is how many answers a probe must have had for its load to
// count as run.
const minAnswered = 100

// Broken lists the promises the run broke: a failed request or query, a
// log line lost or stored twice, an acknowledged write lost, a pod
// replaced or restarted, a resource leaked, or a load that barely ran.
func (r *PodsReport) Broken() []string {
	var out []string
	add := func(what string, list []string) {
		for i, s := range list {
			if i == 10 {
				out = append(out, fmt.Sprintf("%s: ... and %d more", what, len(list)-10))
				break
			}
			out = append(out, what+": "+s)
		}
	}
	add("ingress", r.IngressFailures)
	add("DNS", r.DNSFailures)
	if r.IngressAnswered < minAnswered || r.DNSAnswered < minAnswered {
		out = append(out, fmt.Sprintf("only %d requests and %d queries answered: the load did not run", r.IngressAnswered, r.DNSAnswered))
	}
	add("logs", r.LogProblems)
	if r.LogLinesLost > 0 {
		out = append(out, fmt.Sprintf("logs: %d of %d lines never reached the store", r.LogLinesLost, r.LogLinesWritten))
	}
	if r.LogLinesDuplicated > 0 {
		out = append(out, fmt.Sprintf("logs: %d lines stored more than once", r.LogLinesDuplicated))
	}
	if r.OpsAcknowledged < 20 {
		out = append(out, fmt.Sprintf("only %d writes acknowledged: the ledger load did not run", r.OpsAcknowledged))
	}
	add("ledger", r.Violations)
	add("deployment", r.PodChanges)
	add("leak", r.LeakedResources)
	return out
}

// RunPods runs the real-pod part of the fault suite on t. Three HA
// servers and two agents, each in its own network namespace, on a
// containerd of their own; a two-replica Deployment of the HTTP test
// server behind a Service and an Ingress served by `skiff ingress` on each
// node, `skiff dns` on each node (node 1's talk to server 1, node 2's to
// server 2), and a ticker pod on each node whose numbered lines the agents
// ship to a log store run here. While requests go through both ingresses
// and queries for the Service's name to both DNS servers without pause,
// and a ledger of API writes goes through server 2, it kills with SIGKILL,
// in turn, each node's agent, the nodes' containerd, and server 1 with its
// etcd member, and starts each again. Then it measures what the promises
// are about: failed requests and queries (the pods, ingresses and DNS
// servers never stopped, and one whose API server died keeps what it
// knew), log lines missing from the store or stored twice, acknowledged
// writes lost, Deployment pods replaced or restarted, and, once every pod
// is deleted, what is left of them on the nodes. A failure to set the run
// up ends t (Fatal); what the run measured is in the report.
func RunPods(ctx context.Context, t harness.T, cfg PodsConfig) *PodsReport {
	t.Helper()
	sinkAddr := net.JoinHostPort(multinode.HostIPOf(cfg.Instance), fmt.Sprint(podsLogSinkPort))
	c := multinode.Start(t, multinode.Options{Nodes: 2, Servers: 3, Instance: cfg.Instance, Bin: cfg.Bin,
		Images: []nodetest.Image{nodetest.HTTPServer, nodetest.Busybox}, PrivateContainerd: true,
		AgentLogsURL: "http://" + sinkAddr})
	logs, err := StartLogSink(t.TempDir(), sinkAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = logs.Close() })
	s1, s2 := c.HA[0], c.HA[1]
	cs := s2.Client
	ns := "chaos-web"
	w := &podsWorkload{t: t, c: c, cs: cs, ns: ns}
	before := w.setUp(ctx)
	// An ingress on each node (as ingress controllers run, on nodes):
	// node 1's watches server 1, which gets killed; node 2's server 2.
	// The same for cluster DNS: `skiff dns` on each node.
	for i, s := range []*multinode.ServerProc{s1, s2} {
		n, kubeconfig := c.Nodes[i], filepath.Join(s.DataDir, "admin.kubeconfig")
		startInNode(t, cfg.Bin, n, "ingress", "--kubeconfig", kubeconfig, "--bind-address", n.IP,
			"--ingress-http-port", fmt.Sprint(podsIngressPort), "--ingress-https-port", "0", "--access-log", "", "--health-address", "")
		startInNode(t, cfg.Bin, n, "dns", "--kubeconfig", kubeconfig, "--cluster-dns", "", "--listen", n.IP,
			"--dns-port", fmt.Sprint(podsDNSPort), "--no-forward", "--health-address", "")
	}
	svc, err := cs.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var dnsProbes []*DNSProbe
	var httpProbes []*HTTPProbe
	for _, n := range c.Nodes {
		dnsProbes = append(dnsProbes, &DNSProbe{Server: net.JoinHostPort(n.IP, fmt.Sprint(podsDNSPort)),
			Name: "web." + ns + ".svc.cluster.local.", Want: svc.Spec.ClusterIP})
		httpProbes = append(httpProbes, &HTTPProbe{URL: fmt.Sprintf("http://%s:%d/", n.IP, podsIngressPort), Host: "chaos.test",
			Client: &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4}}})
	}
	// Both ingresses route and both DNS servers answer before the load
	// starts.
	harness.Poll(ctx, t, 60*time.Second, func(ctx context.Context) string {
		for _, p := range httpProbes {
			if msg := p.Once(ctx); msg != "" {
				return p.URL + ": " + msg
			}
		}
		for _, p := range dnsProbes {
			if msg := p.Once(ctx); msg != "" {
				return "DNS at " + p.Server + ": " + msg
			}
		}
		return ""
	})

	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, p := range httpProbes {
		wg.Go(func() { p.Run(loadCtx) })
	}
	for _, p := range dnsProbes {
		wg.Go(func() { p.Run(loadCtx) })
	}
	ledger := &APILoad{Client: serverClient(t, s2), Namespace: "chaos-ledger", Workers: 4, Keys: 10, Ledger: NewLedger(), Retry: 100 * time.Millisecond}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ledger.Namespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { ledger.Run(loadCtx) })
	t.Cleanup(func() { stopLoad(); wg.Wait() })

	rep := &PodsReport{IngressFailures: []string{}, DNSFailures: []string{}}
	start := time.Now()
	fault := func(target string, kill func(), restart func() error) {
		f := Fault{Target: target, Signal: "SIGKILL", AtSeconds: time.Since(start).Seconds()}
		at := time.Now()
		kill()
		if err := restart(); err != nil {
			t.Fatalf("%s after its kill: %v", target, err)
		}
		f.ConvergeSeconds = time.Since(at).Seconds()
		rep.Faults = append(rep.Faults, f)
		t.Logf("fault: %s killed at %.1f s, back %.1f s later", target, f.AtSeconds, f.ConvergeSeconds)
	}
	time.Sleep(2 * time.Second)
	// 1. Each node's agent in turn; back when every node renewed its
	// Lease after the kill.
	for i, n := range c.Nodes {
		var at time.Time
		fault("agent "+n.Name, func() {
			at = time.Now()
			if err := syscall.Kill(n.PID(), syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-n.Done()
			time.Sleep(2 * time.Second)
		}, func() error {
			if err := c.RestartAgent(i, nil); err != nil {
				return err
			}
			return multinode.WaitRenewedAfter(ctx, cs, c.NodeNames(), at, 90*time.Second)
		})
		time.Sleep(2 * time.Second)
	}
	// 2. The nodes' containerd.
	fault("containerd", func() {
		if err := c.KillContainerd(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second)
	}, c.RestartContainerd)
	time.Sleep(2 * time.Second)
	// 3. Server 1 and its etcd member.
	fault("server 1 (etcd member)", func() {
		s1.Kill()
		time.Sleep(3 * time.Second)
	}, s1.Restart)
	time.Sleep(3 * time.Second)
	stopLoad()
	wg.Wait()

	for _, p := range httpProbes {
		rep.IngressAnswered += p.OK
		rep.IngressFailures = append(rep.IngressFailures, p.Failures...)
	}
	for _, p := range dnsProbes {
		rep.DNSAnswered += p.OK
		rep.DNSFailures = append(rep.DNSFailures, p.Failures...)
	}
	w.checkLogs(ctx, logs, rep)

	// The ledger, read back through the restarted member's server.
	ledger.Client = serverClient(t, s1)
	vctx, vcancel := context.WithTimeout(ctx, time.Minute)
	err = ledger.Verify(vctx)
	vcancel()
	if err != nil {
		t.Fatal(err)
	}
	rep.OpsAcknowledged, rep.OpsUnknown, _, rep.Violations = ledger.Ledger.Counts()

	w.checkPods(ctx, before, rep)
	rep.LeakedResources = append([]string{}, w.deleteAndAudit(ctx)...)
	return rep
}

// podsWorkload is the run's Deployment, Service, Ingress and tickers.
type podsWorkload struct {
	t  harness.T
	c  *multinode.Cluster
	cs kubernetes.Interface
	ns string
}

// setUp creates the workload and returns the Deployment's two pods once
// they run.
func (w *podsWorkload) setUp(ctx context.Context) []corev1.Pod {
	t, cs, ns := w.t, w.cs, w.ns
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
	for i, n := range w.c.Nodes {
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
	var pods []corev1.Pod
	harness.Poll(ctx, t, 120*time.Second, func(ctx context.Context) string {
		pods = w.webPods(ctx)
		running := 0
		for _, p := range pods {
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" && p.DeletionTimestamp == nil {
				running++
			}
		}
		if running != 2 || len(pods) != 2 {
			return fmt.Sprintf("%d of %d web pods running; %s", running, len(pods), w.c.Pods(ctx, ns))
		}
		return ""
	})
	return pods
}

func (w *podsWorkload) webPods(ctx context.Context) []corev1.Pod {
	l, err := w.cs.CoreV1().Pods(w.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		return nil
	}
	return l.Items
}

// checkLogs counts, for each ticker, the lines it wrote up to now (its
// log as the agent serves it) that are missing from the store or stored
// twice, waiting up to 90 s for the shippers to catch up.
func (w *podsWorkload) checkLogs(ctx context.Context, st *LogSink, rep *PodsReport) {
	for i := range w.c.Nodes {
		pod := fmt.Sprintf("ticker-%d", i)
		b, err := w.cs.CoreV1().Pods(w.ns).GetLogs(pod, &corev1.PodLogOptions{}).DoRaw(ctx)
		if err != nil {
			w.t.Fatalf("logs of %s: %v", pod, err)
		}
		last := -1
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var n int
			if _, err := fmt.Sscanf(l, "seq %d", &n); err != nil || n != last+1 {
				rep.LogProblems = append(rep.LogProblems, fmt.Sprintf("%s's log has %q after seq %d", pod, l, last))
				break
			}
			last = n
		}
		if last < minAnswered {
			rep.LogProblems = append(rep.LogProblems, fmt.Sprintf("%s wrote only %d lines", pod, last+1))
		}
		var missing, dup int
		for deadline := time.Now().Add(90 * time.Second); ; {
			got, err := st.Seqs(ctx)
			if err != nil {
				w.t.Fatal(err)
			}
			missing, dup = 0, 0
			for n := 0; n <= last; n++ {
				switch got[pod][n] {
				case 0:
					missing++
				case 1:
				default:
					dup++
				}
			}
			if missing == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Second)
		}
		w.t.Logf("%s: %d lines written, %d missing from the store, %d stored twice", pod, last+1, missing, dup)
		rep.LogLinesWritten += last + 1
		rep.LogLinesLost += missing
		rep.LogLinesDuplicated += dup
	}
}

// checkPods compares the Deployment's pods with before: exactly the same
// two, none restarted.
func (w *podsWorkload) checkPods(ctx context.Context, before []corev1.Pod, rep *PodsReport) {
	after := w.webPods(ctx)
	if len(after) != 2 {
		rep.PodChanges = append(rep.PodChanges, fmt.Sprintf("%d web pods after the faults, want 2: %s", len(after), w.c.Pods(ctx, w.ns)))
	}
	uids := map[string]bool{}
	for _, p := range before {
		uids[string(p.UID)] = true
	}
	for _, p := range after {
		if !uids[string(p.UID)] {
			rep.PodChanges = append(rep.PodChanges, fmt.Sprintf("pod %s is new: a web pod was replaced during the faults", p.Name))
		}
		for _, st := range p.Status.ContainerStatuses {
			if st.RestartCount != 0 {
				rep.PodChanges = append(rep.PodChanges, fmt.Sprintf("pod %s: container restarted %d times", p.Name, st.RestartCount))
			}
		}
	}
}

// deleteAndAudit deletes the Deployment and the tickers and returns what
// is left of their pods on the nodes after two minutes (nil when
// nothing is).
func (w *podsWorkload) deleteAndAudit(ctx context.Context) []string {
	t, cs, ns, c := w.t, w.cs, w.ns, w.c
	all, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var nss []string
	for _, p := range all.Items {
		for _, n := range c.Nodes {
			if sb := multinode.SandboxRecord(filepath.Join(n.DataDir, "agent"), string(p.UID)); sb["netns"] != "" {
				nss = append(nss, sb["netns"])
			}
		}
	}
	if len(nss) != len(all.Items) || len(nss) != 4 {
		t.Fatalf("found %d sandbox records with a namespace for %d pods, want 4", len(nss), len(all.Items))
	}
	if err := cs.AppsV1().Deployments(ns).Delete(ctx, "web", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}); err != nil {
		t.Fatal(err)
	}
	for i := range c.Nodes {
		if err := cs.CoreV1().Pods(ns).Delete(ctx, fmt.Sprintf("ticker-%d", i), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	leaks := func(ctx context.Context) []string {
		if l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) != 0 {
			return []string{fmt.Sprintf("pods remain in the API (%v): %s", err, c.Pods(ctx, ns))}
		}
		var left []string
		if n, err := c.Containers(ctx); err != nil || n != 0 {
			left = append(left, fmt.Sprintf("%d containers remain (%v)", n, err))
		}
		for _, nsPath := range nss {
			if _, err := os.Stat(nsPath); !os.IsNotExist(err) {
				left = append(left, "network namespace "+nsPath+" remains")
			}
		}
		for _, n := range c.Nodes {
			state := filepath.Join(n.DataDir, "agent")
			if held := multinode.HeldAddresses(state, ""); held != 0 {
				left = append(left, fmt.Sprintf("node %s: %d pod addresses still held", n.Name, held))
			}
			out, err := exec.CommandContext(ctx, "ip", "-n", n.NetNS, "-o", "link", "show", "type", "veth").CombinedOutput()
			if err != nil {
				left = append(left, fmt.Sprintf("ip link in %s: %v %s", n.NetNS, err, out))
				continue
			}
			// eth0 is the node's own link to the harness bridge.
			for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if f := strings.Fields(l); len(f) > 1 && !strings.HasPrefix(f[1], "eth0@") {
					left = append(left, fmt.Sprintf("node %s: pod veth remains: %s", n.Name, l))
				}
			}
		}
		mounts, _ := os.ReadFile("/proc/self/mountinfo")
		for _, p := range all.Items {
			if strings.Contains(string(mounts), string(p.UID)) {
				left = append(left, fmt.Sprintf("a mount of pod %s remains", p.Name))
			}
		}
		return left
	}
	for deadline := time.Now().Add(2 * time.Minute); ; {
		lctx, lcancel := context.WithTimeout(ctx, 15*time.Second)
		left := leaks(lctx)
		lcancel()
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// startInNode runs `skiff <args>` in node n's network namespace until t
// ends, showing its log when t failed.
func startInNode(t harness.T, bin string, n *multinode.Node, args ...string) {
	t.Helper()
	log := &logBuffer{}
	cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + n.NetNS, "--", bin}, args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("skiff %s on %s log:\n%s", args[0], n.Name, log.tail(3000))
		}
	})
}

// serverClient is a client of one HA server alone (no failover).
func serverClient(t harness.T, s *multinode.ServerProc) kubernetes.Interface {
	t.Helper()
	cs, err := multinode.ClientFor(filepath.Join(s.DataDir, "admin.kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}
