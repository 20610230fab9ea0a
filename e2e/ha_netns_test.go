package e2e

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/harness"
	"github.com/skiffhq/skiff/internal/multinode"
	"github.com/skiffhq/skiff/internal/nodetest"
	"github.com/skiffhq/skiff/internal/testimages"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestHAPartitionAndKill runs three `skiff server` processes as one HA
// cluster and two real-containerd agents, each of the five in a network
// namespace of its own (internal/multinode with Servers: 3). The agents
// are told about the first server only.
//
// Kill: the first server gets SIGKILL. A pod on node 1 keeps running (its
// container is not restarted and keeps writing), the agents move to
// another server and their nodes stay Ready, writes and reads go on
// through the other two, and the pod's logs are served through them.
// The killed server restarts on its data folder and serves what was
// written without it.
//
// Partition: the second server's veth goes down. The majority keeps
// serving writes; the cut-off server refuses a write and reports itself
// not ready (asked from inside its namespace); the nodes stay Ready.
// Healed, it catches up with the writes it missed, and the write it
// refused exists nowhere.
func TestHAPartitionAndKill(t *testing.T) {
	multinode.Require(t)
	c := multinode.Start(t, multinode.Options{Nodes: 2, Servers: 3, Instance: 11, Bin: skiffBin(t),
		Images: []nodetest.Image{nodetest.Busybox}})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	s1, s2, s3 := c.HA[0], c.HA[1], c.HA[2]
	n1 := c.Nodes[0].Name

	// Every server is listed in the kubernetes Endpoints.
	wantEPs := strings.Join([]string{s1.IP, s2.IP, s3.IP}, " ")
	pollOK(ctx, t, 60*time.Second, func(ctx context.Context) string {
		if got := endpointIPs(ctx, s3.Client, metav1.NamespaceDefault, "kubernetes"); got != wantEPs {
			return "kubernetes endpoints: " + got
		}
		return ""
	})

	// Cluster DNS with no server running a node agent: kube-dns lists
	// every server's address, and a pod on a node resolves the
	// `kubernetes` Service through the cluster DNS IP (DNATed to a
	// server, out through its node's guard).
	pollOK(ctx, t, 60*time.Second, func(ctx context.Context) string {
		if got := endpointIPs(ctx, s3.Client, metav1.NamespaceSystem, "kube-dns"); got != wantEPs {
			return "kube-dns endpoints: " + got
		}
		return ""
	})
	kubeSvc, err := s1.Client.CoreV1().Services(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lookup := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "lookup"},
		Spec: corev1.PodSpec{
			NodeSelector:  map[string]string{corev1.LabelHostname: c.Nodes[1].Name},
			RestartPolicy: corev1.RestartPolicyOnFailure,
			Containers: []corev1.Container{{
				Name: "lookup", Image: testimages.Busybox, ImagePullPolicy: corev1.PullNever,
				Command: []string{"nslookup", "kubernetes.default.svc.cluster.local", "10.43.0.10"},
			}},
		},
	}
	if _, err := s1.Client.CoreV1().Pods(metav1.NamespaceDefault).Create(ctx, lookup, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pollOK(ctx, t, 90*time.Second, func(ctx context.Context) string {
		p, err := s1.Client.CoreV1().Pods(metav1.NamespaceDefault).Get(ctx, "lookup", metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		if p.Status.Phase != corev1.PodSucceeded {
			out, _ := s1.Client.CoreV1().Pods(metav1.NamespaceDefault).GetLogs("lookup", &corev1.PodLogOptions{}).DoRaw(ctx)
			return fmt.Sprintf("lookup pod %s: %s", p.Status.Phase, out)
		}
		return ""
	})
	out, err := s1.Client.CoreV1().Pods(metav1.NamespaceDefault).GetLogs("lookup", &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil || !strings.Contains(string(out), kubeSvc.Spec.ClusterIP) {
		t.Fatalf("the pod's lookup of kubernetes.default did not answer %s: %v %s", kubeSvc.Spec.ClusterIP, err, out)
	}

	// One scheduler and one controller manager for the cluster: each runs
	// on the server holding its Lease, named by the server's address.
	liveIPs := []string{s1.IP, s2.IP, s3.IP}
	pollOK(ctx, t, 60*time.Second, func(ctx context.Context) string {
		return singletonsHeldBy(ctx, s2.Client, liveIPs)
	})

	// A pod on node 1 that counts, one line a second.
	ns := "ha"
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "ticker"},
		Spec: corev1.PodSpec{
			NodeSelector:                  map[string]string{corev1.LabelHostname: n1},
			TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{
				Name: "ticker", Image: testimages.Busybox, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done"},
			}},
		},
	}
	if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPodIPs(ctx, t, c, ns, "ticker")
	before, err := c.Client.CoreV1().Pods(ns).Get(ctx, "ticker", metav1.GetOptions{})
	if err != nil || len(before.Status.ContainerStatuses) != 1 {
		t.Fatalf("ticker: %v %+v", err, before.Status)
	}
	containerID := before.Status.ContainerStatuses[0].ContainerID

	// --- Kill the server the agents were given. ---
	tickBefore := -1
	pollOK(ctx, t, 30*time.Second, func(ctx context.Context) string {
		if tickBefore = lastTick(ctx, t, s2.Client, ns); tickBefore < 1 {
			return "no tick in the ticker's log yet"
		}
		return ""
	})
	killed := time.Now()
	s1.Kill()
	pollOK(ctx, t, 60*time.Second, func(ctx context.Context) string {
		if _, err := createConfigMap(ctx, s2.Client, "after-kill"); err != nil {
			return "write through server 2: " + err.Error()
		}
		return ""
	})
	if _, err := s3.Client.CoreV1().ConfigMaps(metav1.NamespaceDefault).Get(ctx, "after-kill", metav1.GetOptions{}); err != nil {
		t.Fatalf("read through server 3: %v", err)
	}
	nodesRenewedAfter(ctx, t, s2.Client, c.NodeNames(), killed)
	// The loops the killed server led moved to a live one.
	pollOK(ctx, t, 60*time.Second, func(ctx context.Context) string {
		return singletonsHeldBy(ctx, s2.Client, []string{s2.IP, s3.IP})
	})
	// The pod ran on: same container, no restart, and it kept counting
	// (its logs come through server 2 from the agent).
	pollOK(ctx, t, 60*time.Second, func(ctx context.Context) string {
		if tk := lastTick(ctx, t, s2.Client, ns); tk < tickBefore+5 {
			return fmt.Sprintf("ticker at %d, was %d before the kill", tk, tickBefore)
		}
		return ""
	})
	after, err := s3.Client.CoreV1().Pods(ns).Get(ctx, "ticker", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st := after.Status.ContainerStatuses; after.Status.Phase != corev1.PodRunning || len(st) != 1 ||
		st[0].ContainerID != containerID || st[0].RestartCount != 0 {
		t.Fatalf("ticker after the kill: phase %s, statuses %+v; want the same container %s running, no restart",
			after.Status.Phase, st, containerID)
	}
	if err := s1.Restart(); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.Client.CoreV1().ConfigMaps(metav1.NamespaceDefault).Get(ctx, "after-kill", metav1.GetOptions{}); err != nil {
		t.Fatalf("read through the restarted server: %v", err)
	}

	// --- Cut the second server off. ---
	if err := s2.Partition(); err != nil {
		t.Fatal(err)
	}
	healed := false
	defer func() {
		if !healed {
			_ = s2.Heal()
		}
	}()
	cut := time.Now()
	pollOK(ctx, t, 60*time.Second, func(ctx context.Context) string {
		if _, err := createConfigMap(ctx, s1.Client, "during-partition"); err != nil {
			return "write through server 1: " + err.Error()
		}
		return ""
	})
	if _, err := s3.Client.CoreV1().ConfigMaps(metav1.NamespaceDefault).Get(ctx, "during-partition", metav1.GetOptions{}); err != nil {
		t.Fatalf("read through server 3 during the partition: %v", err)
	}
	// The minority: not ready, and it refuses writes. Once its etcd
	// member has lost the leader, a write is turned away before etcd sees
	// it (503, "not stored"). Until then a write may be proposed and
	// answered "may or may not have been stored" (504): a proposal queued
	// for the old leader can still commit once the network heals, so only
	// the refused ones are checked below.
	pollOK(ctx, t, 60*time.Second, func(ctx context.Context) string {
		if out, err := s2.Kubectl(ctx, "get", "--raw", "/readyz", "--request-timeout=10s"); err == nil {
			return "the cut-off server is still ready: " + out
		}
		return ""
	})
	var refused []string
	for i := 0; len(refused) == 0; i++ {
		if i == 5 {
			t.Fatal("the cut-off server never refused a write outright")
		}
		name := fmt.Sprintf("minority-write-%d", i)
		out, err := s2.Kubectl(ctx, "create", "configmap", name, "--request-timeout=30s")
		switch {
		case err == nil:
			t.Fatalf("the cut-off server accepted a write: %s", out)
		case strings.Contains(out, "etcd has no quorum: the request was not stored"):
			refused = append(refused, name)
		case strings.Contains(out, "may or may not have been stored"):
			t.Logf("write %s to the cut-off server not confirmed: %s", name, strings.TrimSpace(out))
		default:
			t.Fatalf("write to the cut-off server failed without saying why: %s", out)
		}
	}
	nodesRenewedAfter(ctx, t, s3.Client, c.NodeNames(), cut)

	if err := s2.Heal(); err != nil {
		t.Fatal(err)
	}
	healed = true
	pollOK(ctx, t, 60*time.Second, func(ctx context.Context) string {
		if err := s2.Ready(); err != nil {
			return "healed server: " + err.Error()
		}
		if _, err := s2.Client.CoreV1().ConfigMaps(metav1.NamespaceDefault).Get(ctx, "during-partition", metav1.GetOptions{}); err != nil {
			return "healed server misses the write made without it: " + err.Error()
		}
		return ""
	})
	// A write the minority refused was never stored.
	for _, s := range c.HA {
		for _, name := range refused {
			_, err := s.Client.CoreV1().ConfigMaps(metav1.NamespaceDefault).Get(ctx, name, metav1.GetOptions{})
			if !apierrors.IsNotFound(err) {
				t.Fatalf("the refused write %s, read through %s: %v (want NotFound)", name, s.Name, err)
			}
		}
	}
	if _, err := createConfigMap(ctx, s2.Client, "after-heal"); err != nil {
		t.Fatalf("write through the healed server: %v", err)
	}
	if n := readyNodes(ctx, s1.Client); n != 2 {
		t.Fatalf("%d nodes Ready at the end, want 2", n)
	}
}

// pollOK polls fn every 500 ms until it returns "" and fails the test
// with its last answer after timeout.
func pollOK(ctx context.Context, t *testing.T, timeout time.Duration, fn func(context.Context) string) {
	t.Helper()
	harness.Poll(ctx, t, timeout, fn)
}

func createConfigMap(ctx context.Context, cs kubernetes.Interface, name string) (*corev1.ConfigMap, error) {
	return cs.CoreV1().ConfigMaps(metav1.NamespaceDefault).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"k": "v"},
	}, metav1.CreateOptions{})
}

// endpointIPs lists the addresses of the Endpoints ns/name (its error's
// text when it cannot be read).
func endpointIPs(ctx context.Context, cs kubernetes.Interface, ns, name string) string {
	ep, err := cs.CoreV1().Endpoints(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	var ips []string
	for _, ss := range ep.Subsets {
		for _, a := range ss.Addresses {
			ips = append(ips, a.IP)
		}
	}
	return strings.Join(ips, " ")
}

var tickRE = regexp.MustCompile(`tick (\d+)\n?$`)

// lastTick is the last number the ticker pod printed.
func lastTick(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns string) int {
	t.Helper()
	b, err := cs.CoreV1().Pods(ns).GetLogs("ticker", &corev1.PodLogOptions{TailLines: new(int64(3))}).DoRaw(ctx)
	if err != nil {
		return -1
	}
	m := tickRE.FindStringSubmatch(strings.TrimRight(string(b), "\n"))
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// nodesRenewedAfter waits until every node's Lease was renewed after
// since and the node is Ready.
func nodesRenewedAfter(ctx context.Context, t *testing.T, cs kubernetes.Interface, nodes []string, since time.Time) {
	t.Helper()
	if err := multinode.WaitRenewedAfter(ctx, cs, nodes, since, 90*time.Second); err != nil {
		t.Fatal(err)
	}
}

// singletonsHeldBy checks that the scheduler's and controller manager's
// Leases are held by servers at ips ("" when they are).
func singletonsHeldBy(ctx context.Context, cs kubernetes.Interface, ips []string) string {
	for _, name := range []string{"kube-scheduler", "kube-controller-manager"} {
		l, err := cs.CoordinationV1().Leases("kube-system").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Sprintf("lease %s: %v", name, err)
		}
		holder := ""
		if l.Spec.HolderIdentity != nil {
			holder = *l.Spec.HolderIdentity
		}
		ip, _, _ := strings.Cut(holder, "_")
		if !slices.Contains(ips, ip) {
			return fmt.Sprintf("lease %s held by %q, want one of the servers %v", name, holder, ips)
		}
	}
	return ""
}

func readyNodes(ctx context.Context, cs kubernetes.Interface) int {
	l, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return -1
	}
	n := 0
	for _, node := range l.Items {
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				n++
			}
		}
	}
	return n
}
