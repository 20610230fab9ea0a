package integration

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/nodetest"
	"github.com/skiffhq/skiff/internal/testimages"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/nodeagent/agent"
	"github.com/skiffhq/skiff/nodeagent/runtime"
	"github.com/skiffhq/skiff/server"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	"k8s.io/utils/ptr"
)

// This package's own pod range and bridge, inside the blackholed
// 10.42.0.0/16, so its pods never meet another test's.
const (
	podCIDR = "10.42.246.0/24"
	bridge  = "skiffmx0"
)

// startNode starts a server with 2 s metrics rounds and a real node agent
// on containerd with image, its own pod range and bridge, removed after
// the test; it returns the server, the agent and the node's name.
func startNode(t *testing.T, image nodetest.Image, prefix, cidr, br string) (*testserver.Server, *agent.Agent, string) {
	t.Helper()
	state := nodetest.StateDir(t, image)
	s := testserver.Start(t, func(c *server.Config) { c.MetricsResolution = 2 * time.Second })
	nodeName := fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1e6)
	opts := nodetest.AgentOptions(nodeName, state, cidr, br)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	a, err := s.StartAgent(ctx, opts)
	cancel()
	if err != nil {
		t.Fatalf("start agent: %v", err)
	}
	t.Cleanup(func() { cleanupAgent(t, s, a, opts) })
	return s, a, nodeName
}

// TestMetricsFromRealContainers runs a real node agent on containerd: a
// busybox pod spinning in a shell loop must show about one core and a pod
// holding 100 MiB in a memory-backed emptyDir about 100 MiB, through the
// agent's /stats/summary, metrics.k8s.io and kubectl top.
func TestMetricsFromRealContainers(t *testing.T) {
	nodetest.Require(t)
	s, a, nodeName := startNode(t, nodetest.Busybox, "metrics-node", podCIDR, bridge)
	ctx := context.Background()
	ns := "default"
	_, _ = s.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	burn := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "burn", Namespace: ns, Labels: map[string]string{"app": "burn"}}, Spec: corev1.PodSpec{
		NodeName: nodeName, TerminationGracePeriodSeconds: ptr.To[int64](0),
		Containers: []corev1.Container{{Name: "spin", Image: testimages.Busybox, Command: []string{"sh", "-c", "while :; do :; done"}}},
	}}
	hog := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "hog", Namespace: ns, Labels: map[string]string{"app": "hog"}}, Spec: corev1.PodSpec{
		NodeName: nodeName, TerminationGracePeriodSeconds: ptr.To[int64](0),
		// 100 MiB in a tmpfs the container mounts itself: shmem pages are
		// charged to the writer's cgroup and count in its working set.
		Containers: []corev1.Container{{Name: "hold", Image: testimages.Busybox,
			Command:         []string{"sh", "-c", "mkdir -p /mem && mount -t tmpfs -o size=200m tmpfs /mem && dd if=/dev/zero of=/mem/block bs=1M count=100 && exec sleep 3600"},
			SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)}}},
	}}
	for _, p := range []*corev1.Pod{burn, hog} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, err := s.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
			if err == nil {
				break
			}
			if !apierrors.IsForbidden(err) || time.Now().After(deadline) {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	eventually(t, 60*time.Second, "pods running", func() error {
		for _, n := range []string{"burn", "hog"} {
			p, err := s.Client.CoreV1().Pods(ns).Get(ctx, n, metav1.GetOptions{})
			if err != nil || p.Status.Phase != corev1.PodRunning {
				return fmt.Errorf("%s not running: %v", n, err)
			}
		}
		return nil
	})
	started := time.Now()

	t.Run("agent summary", func(t *testing.T) {
		hc, err := rest.HTTPClientFor(s.Config)
		if err != nil {
			t.Fatal(err)
		}
		url := "https://" + a.APIAddress() + "/stats/summary"
		var sum statsv1alpha1.Summary
		eventually(t, 20*time.Second, "summary with both pods", func() error {
			resp, err := hc.Get(url)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("status %s", resp.Status)
			}
			sum = statsv1alpha1.Summary{}
			if err := json.NewDecoder(resp.Body).Decode(&sum); err != nil {
				return err
			}
			if len(sum.Pods) < 2 {
				return fmt.Errorf("%d pods", len(sum.Pods))
			}
			return nil
		})
		n := sum.Node
		if n.NodeName != nodeName || n.CPU == nil || n.CPU.UsageCoreNanoSeconds == nil || n.Memory == nil || n.Memory.WorkingSetBytes == nil ||
			n.Memory.AvailableBytes == nil || n.Network == nil || n.Network.RxBytes == nil || n.Fs == nil || n.Fs.CapacityBytes == nil {
			t.Errorf("node stats incomplete: %+v", n)
		}
		for _, p := range sum.Pods {
			if len(p.Containers) != 1 || p.Containers[0].CPU == nil || *p.Containers[0].CPU.UsageCoreNanoSeconds == 0 || p.Memory == nil || p.Network == nil || p.Network.Name != "eth0" {
				t.Errorf("pod %s stats incomplete: %+v", p.PodRef.Name, p)
			}
		}
		// Without credentials: 401; with an identity lacking nodes/stats: 403.
		anon := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		if resp, err := anon.Get(url); err != nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("anonymous: %v %v", err, resp)
		} else {
			resp.Body.Close()
		}
		rc, err := s.ComponentConfig("metrics-test-nobody", nil)
		if err != nil {
			t.Fatal(err)
		}
		nobody, err := rest.HTTPClientFor(rc)
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := nobody.Get(url); err != nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("no nodes/stats: %v %v", err, resp)
		} else {
			resp.Body.Close()
		}
	})

	t.Run("busy loop CPU matches the kernel's account", func(t *testing.T) {
		// The spinning shell is the container's only process: its utime +
		// stime is the ground truth. On an idle machine it is one core; on
		// this shared machine it is whatever the scheduler gave it, so the
		// reported rate is compared with the kernel's over the same span.
		pid := containerPid(t, a, "burn")
		eventually(t, 10*time.Second, "two scrapes of burn", func() error {
			if _, ok := s.Metrics().PodMetrics(ns, "burn"); !ok {
				return fmt.Errorf("no metrics")
			}
			return nil
		})
		var reported, truth []float64
		for i := 0; i < 4 && time.Since(started) < 30*time.Second; i++ {
			m0, _ := s.Metrics().PodMetrics(ns, "burn")
			c0, t0 := procCPU(t, pid), time.Now()
			eventually(t, 10*time.Second, "next scrape", func() error {
				m, _ := s.Metrics().PodMetrics(ns, "burn")
				if m == nil || !m.Timestamp.After(m0.Timestamp.Time) {
					return fmt.Errorf("no new scrape")
				}
				return nil
			})
			m1, _ := s.Metrics().PodMetrics(ns, "burn")
			c1, t1 := procCPU(t, pid), time.Now()
			reported = append(reported, float64(m1.Containers[0].Usage.Cpu().MilliValue())/1000)
			truth = append(truth, (c1-c0)/t1.Sub(t0).Seconds())
		}
		var r, k float64
		for i := range reported {
			r, k = r+reported[i], k+truth[i]
		}
		r, k = r/float64(len(reported)), k/float64(len(truth))
		t.Logf("burn: reported %.3f cores, kernel %.3f cores (samples %v vs %v)", r, k, reported, truth)
		if k < 0.05 {
			t.Fatalf("the busy loop got no CPU (%.3f)", k)
		}
		if r < 0.75*k || r > 1.25*k {
			t.Errorf("reported %.3f cores, kernel says %.3f", r, k)
		}
		if k >= 0.9 && (r < 0.8 || r > 1.15) {
			t.Errorf("an uncontended busy loop should show ~1 core, got %.3f", r)
		}
	})

	t.Run("100 MiB in memory shows within 10%", func(t *testing.T) {
		var last int64
		eventually(t, 30*time.Second, "hog at ~100 MiB", func() error {
			m, ok := s.Metrics().PodMetrics(ns, "hog")
			if !ok {
				return fmt.Errorf("no metrics")
			}
			last = m.Containers[0].Usage.Memory().Value()
			if last < 90<<20 || last > 110<<20 {
				return fmt.Errorf("hog working set %d MiB", last>>20)
			}
			return nil
		})
		t.Logf("hog: %.1f MiB", float64(last)/(1<<20))
	})

	t.Run("kubectl top", func(t *testing.T) {
		if _, err := os.Stat("/usr/bin/kubectl"); err != nil {
			t.Skip("kubectl not installed")
		}
		cache := filepath.Join(t.TempDir(), "cache")
		out, err := kubectl(t, s, cache, "top", "pods", "--containers", "-n", ns)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		var cpu string
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) == 4 && f[0] == "burn" && f[1] == "spin" {
				cpu = f[2]
			}
		}
		q, err := resource.ParseQuantity(cpu)
		if err != nil || q.MilliValue() < 50 {
			t.Errorf("kubectl top pods --containers: burn/spin CPU %q:\n%s", cpu, out)
		}
		out, err = kubectl(t, s, cache, "top", "nodes")
		if err != nil || !strings.Contains(out, nodeName) {
			t.Errorf("kubectl top nodes: %v\n%s", err, out)
		}
		t.Logf("kubectl top:\n%s", out)
	})
}

// cleanupAgent deletes the test's pods through the agent, then sweeps what
// is left (containers, network namespaces, the bridge) even when the test
// failed half way.
func cleanupAgent(t *testing.T, s *testserver.Server, a *agent.Agent, opts agent.Options) {
	ctx := context.Background()
	pods, _ := s.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	for _, p := range pods.Items {
		_ = s.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	}
	nodetest.Sweep(t, a, opts)
}

// containerPid is the main process of the pod's first container.
func containerPid(t *testing.T, a *agent.Agent, pod string) int {
	t.Helper()
	cs, err := a.Runtime().List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if c.Labels[runtime.LabelPodName] == pod && c.State == runtime.StateRunning {
			return int(c.Pid)
		}
	}
	t.Fatalf("no running container of %s", pod)
	return 0
}

// procCPU is a process's user + system CPU seconds (/proc/<pid>/stat).
func procCPU(t *testing.T, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	var utime, stime float64
	if _, err := fmt.Sscan(f[11], &utime); err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Sscan(f[12], &stime); err != nil {
		t.Fatal(err)
	}
	return (utime + stime) / 100 // USER_HZ
}
