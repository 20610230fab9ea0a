package agent_test

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testimages"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// evilTar is what a hostile container answers `kubectl cp` with: entries
// that climb out of the destination, an absolute one, and a symlink out
// followed by a file through it.
func evilTar(t *testing.T, outside string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	file := func(name, body string) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write([]byte(body))
	}
	file("data/ok.txt", "fine\n")
	if err := tw.WriteHeader(&tar.Header{Name: "data/link", Linkname: outside, Typeflag: tar.TypeSymlink, Mode: 0o777}); err != nil {
		t.Fatal(err)
	}
	file("data/link/pwned", "pwned\n")
	file("data/../../../cp-escaped", "pwned\n")
	file("/cp-absolute-escaped", "pwned\n")
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestCopyAndLogsTraversal: `kubectl cp` from a container whose tar
// answers with entries that climb out, absolute paths and a symlink out
// writes nothing outside the destination; `kubectl logs` of a container
// name that climbs out is refused.
func TestCopyAndLogsTraversal(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	work := t.TempDir()
	dest := filepath.Join(work, "a", "b", "dest")
	outside := filepath.Join(work, "outside")
	for _, d := range []string{filepath.Dir(dest), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	_ = os.Remove("/cp-absolute-escaped")
	if _, err := e.srv.Client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "evil-tar"},
		Data:       map[string]string{"tar": "#!/bin/sh\ncat /evil/payload.tar\n"},
		BinaryData: map[string][]byte{"payload.tar": evilTar(t, outside)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "cp"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Volumes: []corev1.Volume{{Name: "evil", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "evil-tar"}, DefaultMode: ptr.To[int32](0o755),
			}}}},
			Containers: []corev1.Container{{
				Name: "c", Image: testimages.Busybox, Command: []string{"sleep", "3600"},
				Env:          []corev1.EnvVar{{Name: "PATH", Value: "/evil:/usr/bin:/bin"}},
				VolumeMounts: []corev1.VolumeMount{{Name: "evil", MountPath: "/evil"}},
			}},
		},
	})
	e.waitPod("default", "cp", "Running", running)

	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, "kubectl", "--kubeconfig", e.srv.Kubeconfig(), "cp", "default/cp:/data", dest).CombinedOutput()
	t.Logf("kubectl cp: %v\n%s", err, out)
	// The hostile tar did reach kubectl (through exec, as tar ran).
	if b, err := os.ReadFile(filepath.Join(dest, "ok.txt")); err != nil || string(b) != "fine\n" {
		t.Fatalf("the benign entry was not copied (%v %q): the test did not exercise kubectl's extraction", err, b)
	}
	err = filepath.WalkDir(work, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dest && !strings.HasPrefix(p, dest+"/") && !d.IsDir() {
			t.Errorf("kubectl cp wrote %s outside its destination", p)
		}
		if d.Type()&os.ModeSymlink != 0 {
			t.Errorf("kubectl cp made the symlink %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/cp-absolute-escaped", filepath.Join(outside, "pwned")} {
		if _, err := os.Lstat(p); err == nil {
			_ = os.Remove(p)
			t.Errorf("kubectl cp wrote %s", p)
		}
	}

	out, err = exec.CommandContext(cctx, "kubectl", "--kubeconfig", e.srv.Kubeconfig(), "logs", "cp", "-c", "../../../../etc/passwd").CombinedOutput()
	if err == nil || strings.Contains(string(out), "root:") {
		t.Errorf("kubectl logs of a climbing container name: %v %q", err, out)
	}
	e.deletePodAndWait("cp")
}
