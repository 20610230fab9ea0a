package agent_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testimages"
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
	t.Cleanup(func() {
		_ = syscall.Unmount(blocker, syscall.MNT_DETACH)
		_ = os.RemoveAll(stale)
	})
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
