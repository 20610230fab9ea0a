package agent_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testimages"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// mounted reports whether dir is a mount point in this mount namespace.
func mounted(t *testing.T, dir string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

// TestTerminatedPodVolumes: the memory-backed emptyDir of a pod stays
// mounted while any container runs (a container that exits early does
// not take it from the others) and is unmounted, with the pod's volume
// folders, once the pod has terminated (Succeeded or Failed), while the
// pod object still exists, as the kubelet tears down terminated pods'
// volumes.
func TestTerminatedPodVolumes(t *testing.T) {
	e := setup(t)
	mem := func(name string, containers ...corev1.Container) *corev1.Pod {
		for i := range containers {
			containers[i].Image = testimages.Busybox
			containers[i].VolumeMounts = []corev1.VolumeMount{{Name: "mem", MountPath: "/mem"}, {Name: "disk", MountPath: "/disk"}}
		}
		p := e.createPod(&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{
				RestartPolicy:                 corev1.RestartPolicyNever,
				TerminationGracePeriodSeconds: ptr.To[int64](1),
				Containers:                    containers,
				Volumes: []corev1.Volume{
					{Name: "mem", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: ptr.To(resource.MustParse("4Mi"))}}},
					{Name: "disk", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				},
			},
		})
		return p
	}
	volDir := func(p *corev1.Pod) string { return filepath.Join(e.opts.StateDir, "pods", string(p.UID), "volumes") }
	released := func(p *corev1.Pod, phase corev1.PodPhase) {
		t.Helper()
		tmpfs := filepath.Join(volDir(p), "kubernetes.io~empty-dir", "mem")
		deadline := time.Now().Add(30 * time.Second)
		for mounted(t, tmpfs) || exists(volDir(p)) {
			if time.Now().After(deadline) {
				t.Fatalf("pod %s: tmpfs mounted %v, volumes folder there %v after it terminated", p.Name, mounted(t, tmpfs), exists(volDir(p)))
			}
			time.Sleep(100 * time.Millisecond)
		}
		got := e.waitPod("default", p.Name, "still there", func(*corev1.Pod) bool { return true })
		if got.Status.Phase != phase || got.DeletionTimestamp != nil {
			t.Fatalf("pod %s: phase %s deleting %v; want %s, not deleted", p.Name, got.Status.Phase, got.DeletionTimestamp, phase)
		}
	}

	// Two containers: "quick" writes and exits, "slow" still reads the
	// file later; the pod succeeds only if the tmpfs outlived "quick".
	p := mem("two",
		corev1.Container{Name: "quick", Command: []string{"sh", "-c", "echo x > /mem/f && echo y > /disk/f"}},
		corev1.Container{Name: "slow", Command: []string{"sh", "-c", "sleep 5; test -f /mem/f && test -f /disk/f"}},
	)
	tmpfs := filepath.Join(volDir(p), "kubernetes.io~empty-dir", "mem")
	e.waitPod("default", "two", "quick exited", func(p *corev1.Pod) bool {
		for _, cs := range p.Status.ContainerStatuses {
			if cs.Name == "quick" && cs.State.Terminated != nil {
				return true
			}
		}
		return false
	})
	if !mounted(t, tmpfs) {
		t.Fatalf("%s unmounted while a container runs", tmpfs)
	}
	e.waitPod("default", "two", "terminated", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	})
	released(p, corev1.PodSucceeded)

	// A failed pod is released too.
	p = mem("failed", corev1.Container{Name: "c", Command: []string{"sh", "-c", "echo x > /mem/f; exit 3"}})
	e.waitPod("default", "failed", "failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	released(p, corev1.PodFailed)
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
