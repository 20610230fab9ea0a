package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testimages"
	"github.com/skiffhq/skiff/nodeagent/runtime"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// An earlier attempt left a pod's sandbox unfinished (no address) with a
// network namespace the agent cannot remove yet. The agent must not build
// a new sandbox over the old record, which would forget that namespace
// for good: it keeps the record and retries, and once the old namespace
// can go, it goes, the pod runs, and its deletion leaves nothing behind.
// (The old code warned, made a new sandbox, and leaked the old one.)
func TestUnfinishedSandboxTeardownIsRetried(t *testing.T) {
	e := setup(t)
	e.agent.Stop() // the pod is created while no agent runs
	e.agent = nil
	pod := e.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "stale-sandbox"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{Name: "c", Image: testimages.Busybox, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sleep", "3600"}}},
		},
	})
	// The unfinished record names a "namespace" that cannot be removed:
	// a folder with a mount in it (its removal fails with EBUSY).
	stale := filepath.Join(e.opts.NetNSDir, "skiff-"+string(pod.UID)+"-0badcafe")
	blocker := filepath.Join(stale, "busy")
	if err := os.MkdirAll(blocker, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", blocker, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupStaleSandboxTest(t, e, string(pod.UID), stale) })
	podDir := filepath.Join(e.opts.StateDir, "pods", string(pod.UID))
	if err := os.MkdirAll(podDir, 0o755); err != nil {
		t.Fatal(err)
	}
	rec, _ := json.Marshal(map[string]any{"uid": pod.UID, "namespace": pod.Namespace, "name": pod.Name, "netns": stale, "ip": "",
		"created": time.Now().UTC()})
	if err := os.WriteFile(filepath.Join(podDir, "sandbox.json"), rec, 0o644); err != nil {
		t.Fatal(err)
	}
	e.start()

	// While the old namespace stays, the pod waits and the record still
	// names it.
	time.Sleep(4 * time.Second)
	p, err := e.srv.Client.CoreV1().Pods("default").Get(context.Background(), pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if running(p) {
		t.Errorf("the pod runs in a new sandbox while the old one's namespace is still there")
	}
	b, err := os.ReadFile(filepath.Join(podDir, "sandbox.json"))
	if err != nil || !strings.Contains(string(b), stale) {
		t.Fatalf("the sandbox record no longer names the old namespace %s: %s (%v)", stale, b, err)
	}

	// The old namespace can go now: the retry removes it, then the pod
	// runs.
	if err := syscall.Unmount(blocker, 0); err != nil {
		t.Fatal(err)
	}
	e.waitPod("default", pod.Name, "running", running)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the old namespace %s is still there (%v)", stale, err)
	}
	p, err = e.srv.Client.CoreV1().Pods("default").Get(context.Background(), pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.deletePodAndWait(pod.Name)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if _, err := os.Stat(podDir); os.IsNotExist(err) || time.Now().After(deadline) {
			break
		}
	}
	assertNothingLeft(t, e, string(pod.UID), p.Status.PodIP)
}

// cleanupStaleSandboxTest leaves nothing of TestUnfinishedSandboxTeardownIsRetried
// behind, even when it failed half way (the pod still running, the
// blocker still mounted): it runs before setup's sweep, so it stops the
// agent itself first (no agent may make the container again after it is
// gone), then kills and deletes the pod's containers through a runtime of
// its own, lazily unmounts whatever is mounted under the agent's state
// folder (the blocker's tmpfs, network namespaces' nsfs), and removes the
// old namespace folder. setup's sweep then releases the network.
func cleanupStaleSandboxTest(t *testing.T, e *env, uid, stale string) {
	ctx := context.Background()
	if e.agent != nil {
		_ = e.srv.Client.CoreV1().Pods("default").Delete(ctx, "stale-sandbox", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](1)})
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if cs, err := e.agent.Runtime().ListPod(ctx, uid); err == nil && len(cs) == 0 {
				break
			}
		}
		e.agent.Stop()
		e.agent = nil
	}
	if rt, err := runtime.New(ctx, runtime.Options{}); err != nil {
		t.Errorf("clean-up: containerd: %v", err)
	} else {
		cs, err := rt.ListPod(ctx, uid)
		if err != nil {
			t.Errorf("clean-up: list the pod's containers: %v", err)
		}
		for _, c := range cs {
			if err := rt.Remove(ctx, c.ID); err != nil {
				t.Errorf("clean-up: %v", err)
			}
		}
		rt.Close()
	}
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Errorf("clean-up: %v", err)
	}
	var under []string
	for _, l := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(f[1], e.opts.StateDir+"/") {
			under = append(under, f[1])
		}
	}
	for i := len(under) - 1; i >= 0; i-- { // the last mounted first
		if err := syscall.Unmount(under[i], syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			t.Errorf("clean-up: unmount %s: %v", under[i], err)
		}
	}
	if err := os.RemoveAll(stale); err != nil {
		t.Errorf("clean-up: %v", err)
	}
}
