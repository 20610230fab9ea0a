package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiffhq/skiff/nodeagent/agent/atomicwriter"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// TestSubPathExpr: upstream's expansion rules and errors.
func TestSubPathExpr(t *testing.T) {
	vars := map[string]string{"POD_NAME": "web-0", "NS": "default", "EMPTY": ""}
	for expr, want := range map[string]string{
		"$(POD_NAME)":            "web-0",
		"logs/$(NS)/$(POD_NAME)": "logs/default/web-0",
		"cost$$":                 "cost$",
		"$$(POD_NAME)":           "$(POD_NAME)",
		"plain":                  "plain",
		"open$(POD_NAME":         "open$(POD_NAME",
	} {
		got, err := expandSubPathExpr(expr, vars)
		if err != nil || got != want {
			t.Errorf("expand %q = %q, %v; want %q", expr, got, err, want)
		}
	}
	for expr, msg := range map[string]string{
		"$(NOPE)":             "missing value for NOPE",
		"$(EMPTY)/$(B)/$(A)":  "missing value for A, B, EMPTY",
		"$(POD_NAME)/$(NOPE)": "missing value for NOPE",
	} {
		if _, err := expandSubPathExpr(expr, vars); err == nil || err.Error() != msg {
			t.Errorf("expand %q: %v; want %q", expr, err, msg)
		}
	}
}

// TestSubPathSource: a subPath is made when missing, symlinks resolve
// (an API-data key to its generation, so a subPath mount keeps the value it
// started with), and nothing resolves out of the volume.
func TestSubPathSource(t *testing.T) {
	base := t.TempDir()
	pod := &corev1.Pod{}
	got, err := subPathSource(base, "per-pod/web-0", pod)
	if err != nil || got != filepath.Join(base, "per-pod/web-0") {
		t.Fatalf("new subPath: %q, %v", got, err)
	}
	if st, err := os.Stat(got); err != nil || !st.IsDir() {
		t.Fatalf("subPath not made: %v", err)
	}
	for _, bad := range []string{"/etc", "../x", "a/../../x"} {
		if _, err := subPathSource(base, bad, pod); err == nil {
			t.Errorf("subPath %q accepted", bad)
		}
	}
	if err := os.Symlink("/etc", filepath.Join(base, "escape")); err != nil {
		t.Fatal(err)
	}
	if _, err := subPathSource(base, "escape", pod); err == nil || !strings.Contains(err.Error(), "not within volume path") {
		t.Errorf("symlink out of the volume: %v", err)
	}
	// A missing subPath under a symlink out of the volume: refused, and
	// nothing made where the symlink leads.
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(base, "out")); err != nil {
		t.Fatal(err)
	}
	fsPod := &corev1.Pod{Spec: corev1.PodSpec{SecurityContext: &corev1.PodSecurityContext{FSGroup: ptr.To[int64](4321)}}}
	if _, err := subPathSource(base, "out/made/here", fsPod); err == nil {
		t.Errorf("a subPath made through a symlink out of the volume was accepted")
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("the agent made %v outside the volume", ents)
	}
	if got, err := subPathSource(base, "grouped/dir", fsPod); err != nil {
		t.Fatalf("fsGroup subPath: %v", err)
	} else if st, err := os.Stat(got); err != nil || st.Mode()&os.ModeSetgid == 0 || st.Mode().Perm() != 0o775 {
		t.Errorf("fsGroup subPath %s: %v %v, want setgid 0775", got, st.Mode(), err)
	}
	vol := filepath.Join(t.TempDir(), "cm")
	if err := atomicwriter.Write(vol, map[string]atomicwriter.File{"key": {Data: []byte("old"), Mode: 0o644}}, nil); err != nil {
		t.Fatal(err)
	}
	src, err := subPathSource(vol, "key", pod)
	if err != nil {
		t.Fatal(err)
	}
	gen, _ := os.Readlink(filepath.Join(vol, atomicwriter.DataDirName))
	if src != filepath.Join(vol, gen, "key") {
		t.Fatalf("subPath of a key resolves to %s, want its generation %s", src, gen)
	}
}

// TestEmptyDirMemory: medium Memory is a tmpfs of upstream's size, mounted
// once however often the pod syncs, and unmounted with the pod's folder.
// Needs root (mount), not containerd.
func TestEmptyDirMemory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount tmpfs")
	}
	a := &Agent{opts: Options{StateDir: t.TempDir()}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: "uid-mem"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c"}}}}
	v := corev1.Volume{Name: "shm", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
		Medium: corev1.StorageMediumMemory, SizeLimit: ptr.To(resource.MustParse("8Mi"))}}}
	t.Cleanup(func() {
		_ = unmountTmpfsVolumes(filepath.Join(a.podDir(pod.UID), "volumes", "kubernetes.io~empty-dir"))
	})
	var dir string
	for range 3 {
		var err error
		if dir, err = a.prepareVolume(context.Background(), pod, v); err != nil {
			t.Fatal(err)
		}
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type != unix.TMPFS_MAGIC {
		t.Fatalf("%s is not a tmpfs (type %#x)", dir, fs.Type)
	}
	if size := int64(fs.Blocks) * fs.Bsize; size != 8<<20 {
		t.Errorf("tmpfs size %d, want the sizeLimit 8Mi", size)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(mounts), " "+dir+" "); n != 1 {
		t.Fatalf("%s mounted %d times after three syncs, want 1", dir, n)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := a.cleanPodDir(pod.UID); err != nil {
		t.Fatal(err)
	}
	mounts, _ = os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), " "+dir+" ") {
		t.Fatalf("%s still mounted after the pod's folder was removed", dir)
	}
	if _, err := os.Stat(a.podDir(pod.UID)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pod folder left: %v", err)
	}
}

// TestEmptyDirMemorySize: the smallest of node memory, the pod's limit
// (when every container has one) and the sizeLimit.
func TestEmptyDirMemorySize(t *testing.T) {
	lim := func(s string) corev1.ResourceRequirements {
		return corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(s)}}
	}
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		t.Fatal(err)
	}
	node := int64(si.Totalram) * int64(si.Unit)
	limited := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Resources: lim("64Mi")}, {Resources: lim("32Mi")}}}}
	partly := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Resources: lim("64Mi")}, {}}}}
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		size string
		want int64
	}{
		{"no limits", partly, "", node},
		{"pod limit", limited, "", 96 << 20},
		{"sizeLimit below the pod's", limited, "16Mi", 16 << 20},
		{"sizeLimit above the pod's", limited, "1Gi", 96 << 20},
		{"sizeLimit, no pod limit", partly, "16Mi", 16 << 20},
	} {
		ed := &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}
		if tc.size != "" {
			ed.SizeLimit = ptr.To(resource.MustParse(tc.size))
		}
		if got := emptyDirMemorySize(tc.pod, ed); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}
