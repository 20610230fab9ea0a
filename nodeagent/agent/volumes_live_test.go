package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testimages"
	"github.com/skiffhq/skiff/nodeagent/agent"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// hostDir is a folder for a test's hostPath volume, removed after the
// test's pods are gone (registered before setup, so it runs after it).
func hostDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "skiff-vol-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}

func waitFile(t *testing.T, path, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		b, err := os.ReadFile(path)
		if err == nil && string(b) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %q, %v; want %q", path, b, err, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAPIDataVolumesLive: a running pod sees a ConfigMap update in its
// configMap volume, an optional ConfigMap created after it started, and
// its new labels in a downwardAPI volume, while a subPath mount of the
// same key keeps the value it started with (upstream). The volume is
// mounted read-only. The agent resyncs only hourly here: the ConfigMap
// changes reach the pod through the agent's watches of its volumes'
// sources, and the watches end with the pod.
func TestAPIDataVolumesLive(t *testing.T) {
	out := hostDir(t)
	e := setupWith(t, func(o *agent.Options) { o.ResyncInterval = time.Hour })
	ctx := context.Background()
	c := e.srv.Client
	cm, err := c.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "live"}, Data: map[string]string{"key": "v1"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	script := `copy() { cat "$1" > "/out/$2.tmp" 2>/dev/null && mv "/out/$2.tmp" "/out/$2"; }
while true; do
  copy /cfg/key live; copy /sub-key sub; copy /opt/k opt; copy /dapi/labels labels
  if touch /cfg/x 2>/dev/null; then echo rw > /out/mode; else echo ro > /out/mode; fi
  sleep 0.2
done`
	cmVol := func(name string, optional bool) corev1.VolumeSource {
		return corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Optional: ptr.To(optional)}}
	}
	e.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "live", Labels: map[string]string{"gen": "1"}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name: "c", Image: testimages.Busybox, Command: []string{"sh", "-c", script},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "cfg", MountPath: "/cfg"},
					{Name: "cfg", MountPath: "/sub-key", SubPath: "key"},
					{Name: "opt", MountPath: "/opt"},
					{Name: "dapi", MountPath: "/dapi"},
					{Name: "out", MountPath: "/out"},
				},
			}},
			Volumes: []corev1.Volume{
				{Name: "cfg", VolumeSource: cmVol("live", false)},
				{Name: "opt", VolumeSource: cmVol("later", true)},
				{Name: "dapi", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
					{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
				}}}},
				{Name: "out", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: out}}},
			},
		},
	})
	e.waitPod("default", "live", "Running", running)
	waitFile(t, filepath.Join(out, "live"), "v1", 20*time.Second)
	waitFile(t, filepath.Join(out, "sub"), "v1", 5*time.Second)
	waitFile(t, filepath.Join(out, "labels"), `gen="1"`, 5*time.Second)
	waitFile(t, filepath.Join(out, "mode"), "ro\n", 5*time.Second)
	if _, err := os.Stat(filepath.Join(out, "opt")); !os.IsNotExist(err) {
		t.Fatalf("optional missing ConfigMap has a key: %v", err)
	}

	cm.Data["key"] = "v2"
	if _, err := c.CoreV1().ConfigMaps("default").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "later"}, Data: map[string]string{"k": "hello"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().Pods("default").Patch(ctx, "live", types.MergePatchType, []byte(`{"metadata":{"labels":{"gen":"2"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFile(t, filepath.Join(out, "live"), "v2", 30*time.Second)
	waitFile(t, filepath.Join(out, "opt"), "hello", 30*time.Second)
	waitFile(t, filepath.Join(out, "labels"), `gen="2"`, 30*time.Second)
	// The subPath mount was copied after the update too (the loop runs
	// every 0.2 s): it still holds the value it started with.
	time.Sleep(time.Second)
	if b, err := os.ReadFile(filepath.Join(out, "sub")); err != nil || string(b) != "v1" {
		t.Fatalf("subPath mount of the key = %q, %v; want the old value v1", b, err)
	}
	if n := e.agent.WatchedSources(); n != 3 {
		t.Fatalf("agent watches %d volume sources, want 3 (live, later and the token volume's kube-root-ca.crt)", n)
	}
	if err := c.CoreV1().Pods("default").Delete(ctx, "live", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](1)}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for e.agent.WatchedSources() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("agent still watches %d volume sources after the pod was deleted", e.agent.WatchedSources())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestSubPathExprAndMemoryEmptyDir: subPathExpr with the pod's name from
// a fieldRef mounts a per-pod folder of a hostPath volume; an unset
// variable keeps the container from starting (CreateContainerConfigError
// and a Failed event); an emptyDir of medium Memory is a tmpfs of its
// sizeLimit in the container and is unmounted when the pod goes.
func TestSubPathExprAndMemoryEmptyDir(t *testing.T) {
	logs := hostDir(t)
	// Safety net, after the harness's cleanup: no tmpfs of this test stays
	// mounted even if the agent stopped before it unmounted one.
	var stateDir string
	t.Cleanup(func() {
		if stateDir == "" {
			return
		}
		mi, _ := os.ReadFile("/proc/self/mountinfo")
		for _, l := range strings.Split(string(mi), "\n") {
			if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], stateDir+"/") && strings.Contains(f[4], "/kubernetes.io~empty-dir/") {
				_ = unix.Unmount(f[4], unix.MNT_DETACH)
			}
		}
	})
	e := setup(t)
	stateDir = e.opts.StateDir
	ctx := context.Background()
	c := e.srv.Client
	podName := corev1.EnvVar{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}
	logsVol := corev1.Volume{Name: "logs", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: logs}}}
	p := e.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "spe"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name: "c", Image: testimages.Busybox,
				Command: []string{"sh", "-c", "grep ' /mem ' /proc/mounts > /logs/mounts; echo hi > /logs/f; sleep 3600"},
				Env:     []corev1.EnvVar{podName},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "logs", MountPath: "/logs", SubPathExpr: "$(POD_NAME)/c"},
					{Name: "mem", MountPath: "/mem"},
				},
			}},
			Volumes: []corev1.Volume{logsVol, {Name: "mem", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
				Medium: corev1.StorageMediumMemory, SizeLimit: ptr.To(resource.MustParse("8Mi"))}}}},
		},
	})
	e.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "spe-bad"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name: "c", Image: testimages.Busybox, Command: []string{"sleep", "3600"}, Env: []corev1.EnvVar{podName},
				VolumeMounts: []corev1.VolumeMount{{Name: "logs", MountPath: "/logs", SubPathExpr: "$(POD_NAME)/$(NOPE)"}},
			}},
			Volumes: []corev1.Volume{logsVol},
		},
	})
	e.waitPod("default", "spe", "Running", running)
	waitFile(t, filepath.Join(logs, "spe", "c", "f"), "hi\n", 20*time.Second)
	b, err := os.ReadFile(filepath.Join(logs, "spe", "c", "mounts"))
	if err != nil || !strings.HasPrefix(string(b), "tmpfs /mem tmpfs ") || !strings.Contains(string(b), "size=8192k") {
		t.Fatalf("/mem in the container's /proc/mounts: %q, %v; want a tmpfs of size 8192k", b, err)
	}
	memDir := filepath.Join(e.opts.StateDir, "pods", string(p.UID), "volumes", "kubernetes.io~empty-dir", "mem")
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); !strings.Contains(string(mi), " "+memDir+" ") {
		t.Fatalf("%s is not mounted on the host", memDir)
	}

	bad := e.waitPod("default", "spe-bad", "CreateContainerConfigError", func(p *corev1.Pod) bool {
		cs := p.Status.ContainerStatuses
		return len(cs) == 1 && cs[0].State.Waiting != nil && cs[0].State.Waiting.Reason == "CreateContainerConfigError"
	})
	if msg := bad.Status.ContainerStatuses[0].State.Waiting.Message; msg != "missing value for NOPE" {
		t.Errorf("waiting message %q", msg)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		evs, err := c.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=spe-bad"})
		found := false
		if err == nil {
			for _, ev := range evs.Items {
				found = found || (ev.Reason == "Failed" && ev.Type == corev1.EventTypeWarning && ev.Message == "Error: missing value for NOPE")
			}
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Failed event for the unset subPathExpr variable (%v)", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if ents, _ := os.ReadDir(logs); len(ents) != 1 {
		t.Errorf("hostPath holds %d folders, want only the good pod's", len(ents))
	}

	if err := c.CoreV1().Pods("default").Delete(ctx, "spe", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](1)}); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		mi, _ := os.ReadFile("/proc/self/mountinfo")
		_, statErr := os.Stat(memDir)
		if !strings.Contains(string(mi), " "+memDir+" ") && os.IsNotExist(statErr) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("memory emptyDir %s still mounted or present after the pod was deleted (%v)", memDir, statErr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
