package agent_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testimages"
	"github.com/skiffhq/skiff/nodeagent/agent"
	"github.com/skiffhq/skiff/nodeagent/runtime"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// pidsCgroup is the directory of the pids cgroup of process pid, on a
// cgroup v1 pids hierarchy or on the cgroup v2 one.
func pidsCgroup(t *testing.T, pid uint32) string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v2 := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "pids" {
				return filepath.Join("/sys/fs/cgroup/pids", parts[2])
			}
		}
		if parts[0] == "0" {
			v2 = parts[2]
		}
	}
	for _, root := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		if _, err := os.Stat(filepath.Join(root, v2, "pids.max")); err == nil {
			return filepath.Join(root, v2)
		}
	}
	t.Fatalf("process %d has no pids cgroup", pid)
	return ""
}

func readInt(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return n
}

// TestForkBombContained: a pod that forks without end is held at the
// agent's per-container process bound (--pod-max-pids) and its CPU
// limit; meanwhile the node keeps renewing its Lease and stays Ready,
// another pod starts and answers exec, and the bomb's pod is torn down
// when deleted.
func TestForkBombContained(t *testing.T) {
	const limit = 64
	e := setupWith(t, func(o *agent.Options) { o.PodPidsLimit = limit })
	ctx := context.Background()
	e.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "bomb"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name: "c", Image: testimages.Busybox,
				// The bomb runs beside a PID 1 that never forks (a fork
				// could fail and end it, and the container with it).
				Command: []string{"sh", "-c", "b(){ b | b & }; b; while :; do :; done"},
				Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("200m"),
				}},
			}},
		},
	})
	e.waitPod("default", "bomb", "Running", running)
	var pid uint32
	for _, c := range e.ourContainers() {
		if c.Labels[runtime.LabelPodName] == "bomb" && c.Pid != 0 {
			pid = c.Pid
		}
	}
	if pid == 0 {
		t.Fatal("no running container of the bomb pod")
	}
	cg := pidsCgroup(t, pid)
	if got := readInt(t, filepath.Join(cg, "pids.max")); got != limit {
		t.Fatalf("%s/pids.max = %d, want %d", cg, got, limit)
	}
	// The bomb can die out at the bound (a shell whose fork failed
	// exits), so the proof that it reached the bound is what the kernel
	// keeps: the forks it refused (pids.events) and the peak
	// (pids.peak, where the kernel has it), not a sample of
	// pids.current.
	deadline := time.Now().Add(60 * time.Second)
	for {
		ev, _ := os.ReadFile(filepath.Join(cg, "pids.events"))
		if f := strings.Fields(string(ev)); len(f) == 2 && f[0] == "max" && f[1] != "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pids.events %q after 60 s: the bomb was never refused a fork (%d processes now)",
				ev, readInt(t, filepath.Join(cg, "pids.current")))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(cg, "pids.peak")); err == nil {
		if peak := readInt(t, filepath.Join(cg, "pids.peak")); peak != limit {
			t.Fatalf("pids.peak = %d, want the bound %d", peak, limit)
		}
	}
	if n := readInt(t, filepath.Join(cg, "pids.current")); n > limit {
		t.Fatalf("pids.current = %d over the bound %d", n, limit)
	}

	// The node carries on: Lease renewed, Ready, a new pod runs.
	lease0, err := e.srv.Client.CoordinationV1().Leases("kube-node-lease").Get(ctx, e.nodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "bystander"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers:                    []corev1.Container{{Name: "c", Image: testimages.Busybox, Command: []string{"sleep", "3600"}}},
		},
	})
	e.waitPod("default", "bystander", "Running", running)
	if out, code := e.execIn("default", "bystander", "c", "echo", "alive"); code != 0 || out != "alive\n" {
		t.Errorf("exec beside the bomb: %d %q", code, out)
	}
	if n := readInt(t, filepath.Join(cg, "pids.current")); n > limit {
		t.Errorf("the bomb holds %d processes, over the bound %d", n, limit)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		l, err := e.srv.Client.CoordinationV1().Leases("kube-node-lease").Get(ctx, e.nodeName, metav1.GetOptions{})
		if err == nil && l.Spec.RenewTime.After(lease0.Spec.RenewTime.Time) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node Lease was not renewed while the bomb ran: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	n, err := e.srv.Client.CoreV1().Nodes().Get(ctx, e.nodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status != corev1.ConditionTrue {
			t.Errorf("node not Ready while the bomb ran: %+v", c)
		}
	}

	e.deletePodAndWait("bomb")
	for _, c := range e.ourContainers() {
		if c.Labels[runtime.LabelPodName] == "bomb" {
			t.Errorf("container %s of the deleted bomb pod remains", c.ID)
		}
	}
	if _, err := os.Stat(cg); err == nil {
		if n := readInt(t, filepath.Join(cg, "pids.current")); n != 0 {
			t.Errorf("%d processes of the deleted bomb remain in %s", n, cg)
		}
	}
	e.deletePodAndWait("bystander")
}

// TestMemoryLimitOOMKilled: a container that allocates past its memory
// limit is killed by the kernel in its own cgroup and reported as
// upstream does (terminated, reason OOMKilled, exit code 137), and the
// node stays Ready.
func TestMemoryLimitOOMKilled(t *testing.T) {
	e := setup(t)
	e.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "hog"},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name: "c", Image: testimages.Busybox,
				// dd's block buffer is 256 MiB, all of it written to.
				Command: []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"},
				Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{
					corev1.ResourceMemory: resource.MustParse("32Mi"),
				}},
			}},
		},
	})
	p := e.waitPod("default", "hog", "Failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].State.Terminated == nil {
		t.Fatalf("status: %+v", p.Status)
	}
	term := p.Status.ContainerStatuses[0].State.Terminated
	if term.Reason != "OOMKilled" || term.ExitCode != 137 {
		t.Errorf("terminated: reason %q exit %d, want OOMKilled 137", term.Reason, term.ExitCode)
	}
	n, err := e.srv.Client.CoreV1().Nodes().Get(context.Background(), e.nodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status != corev1.ConditionTrue {
			t.Errorf("node not Ready after the OOM kill: %+v", c)
		}
	}
	e.deletePodAndWait("hog")
}
