package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
)

// loopFS mounts a fresh ext4 filesystem of size bytes (no root reserve)
// on a loop device and returns its mount point; it is unmounted (and the
// loop device freed) when the test ends.
func loopFS(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a loop filesystem")
	}
	for _, tool := range []string{"mkfs.ext4", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	base := t.TempDir()
	img, dir := filepath.Join(base, "fs.img"), filepath.Join(base, "mnt")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-m", "0", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a loop filesystem here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			var open []string
			fds, _ := os.ReadDir("/proc/self/fd")
			for _, fd := range fds {
				if l, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(l, dir) {
					open = append(open, l)
				}
			}
			t.Errorf("umount %s: %v: %s (files this process holds open there: %v)", dir, err, out, open)
			_ = exec.Command("umount", "-l", dir).Run()
		}
	})
	return dir
}

// fill writes a file into dir until the filesystem has no space left.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", dir, err)
			}
			break
		}
	}
	_ = f.Sync()
	return path
}

// TestDataDirFull: with the embedded etcd's data directory on a small
// filesystem that fills up to the last byte, writes are refused with a
// clear 507 and nothing is stored, reads keep working and the server
// stays up; once space returns writes are accepted again, and a restart
// on the same directory finds every acknowledged write intact.
func TestDataDirFull(t *testing.T) {
	dir := loopFS(t, 320<<20)
	dataDir := filepath.Join(dir, "skiff")
	var cfg server.Config
	s := testserver.Start(t, func(c *server.Config) {
		c.DataDir = dataDir
		c.StorageReserve = 32 << 20
		cfg = *c
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cms := s.Client.CoreV1().ConfigMaps("default")
	want := map[string]string{}
	for i := range 20 {
		name := fmt.Sprintf("before-%d", i)
		if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"v": name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		want[name] = name
	}

	filler := fill(t, dir)
	// The guard rereads the free space at most every 250 ms.
	var refused error
	for i := 0; ; i++ {
		// One created before the guard saw the full disk was
		// acknowledged, so it must survive like the others.
		name := fmt.Sprintf("during-%d", i)
		_, refused = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"v": name}}, metav1.CreateOptions{})
		if refused != nil || i == 100 {
			break
		}
		want[name] = name
		time.Sleep(100 * time.Millisecond)
	}
	var se apierrors.APIStatus
	if !errors.As(refused, &se) || se.Status().Code != http.StatusInsufficientStorage ||
		!strings.Contains(se.Status().Message, "not stored") || !strings.Contains(se.Status().Message, "free") {
		t.Fatalf("create on a full data directory: %v; want a 507 saying nothing was stored and how much is free", refused)
	}
	t.Logf("refused: %s", se.Status().Message)
	out, err := exec.CommandContext(ctx, "kubectl", "--kubeconfig", s.Kubeconfig(), "create", "configmap", "by-kubectl").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not stored") {
		t.Errorf("kubectl create on a full disk: %v: %s", err, out)
	}
	cm, err := cms.Get(ctx, "before-3", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("read on a full disk: %v", err)
	}
	cm.Data["v"] = "changed"
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); !is507(err) {
		t.Errorf("update on a full disk: %v, want 507", err)
	}
	if err := cms.Delete(ctx, "before-4", metav1.DeleteOptions{}); !is507(err) {
		t.Errorf("delete on a full disk: %v, want 507", err)
	}
	// Reads keep working, and the server stays up while the disk stays full.
	time.Sleep(2 * time.Second)
	checkConfigMaps(ctx, t, s.Client, want, "on a full disk")
	if out, err := exec.CommandContext(ctx, "kubectl", "--kubeconfig", s.Kubeconfig(), "get", "configmaps", "-o", "name").CombinedOutput(); err != nil || !strings.Contains(string(out), "configmap/before-19") {
		t.Errorf("kubectl get on a full disk: %v: %s", err, out)
	}
	if body, err := s.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err != nil {
		t.Fatalf("server not ready on a full disk: %v %s", err, body)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after"}, Data: map[string]string{"v": "after"}}, metav1.CreateOptions{})
		if err == nil {
			want["after"] = "after"
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writes still refused after space came back: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cm, err = cms.Get(ctx, "before-3", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["v"] = "changed"
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update after space came back: %v", err)
	}
	want["before-3"] = "changed"
	if err := cms.Delete(ctx, "before-4", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete after space came back: %v", err)
	}
	delete(want, "before-4")
	checkConfigMaps(ctx, t, s.Client, want, "after space came back")

	// A restart on the same data directory: nothing lost or corrupted.
	s.Stop()
	cfg.HTTPSPort, cfg.EtcdClientPort, cfg.EtcdPeerPort = 0, 0, 0
	s2 := testserver.StartWith(t, cfg)
	checkConfigMaps(ctx, t, s2.Client, want, "after a restart")
}

func is507(err error) bool {
	var se apierrors.APIStatus
	return errors.As(err, &se) && se.Status().Code == http.StatusInsufficientStorage
}

// checkConfigMaps: default's ConfigMaps named before-*, during-* or after
// are exactly want, with their values.
func checkConfigMaps(ctx context.Context, t *testing.T, cs kubernetes.Interface, want map[string]string, when string) {
	t.Helper()
	l, err := cs.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list %s: %v", when, err)
	}
	got := map[string]string{}
	for _, cm := range l.Items {
		if strings.HasPrefix(cm.Name, "before-") || strings.HasPrefix(cm.Name, "during-") || cm.Name == "after" {
			got[cm.Name] = cm.Data["v"]
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ConfigMaps %s: %v, want %v", when, got, want)
	}
}
