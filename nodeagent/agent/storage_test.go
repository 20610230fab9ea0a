package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testimages"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// TestStatefulSetVolumes runs real containers on real local-path volumes:
// a StatefulSet with three replicas and volumeClaimTemplates (default
// class local-path, WaitForFirstConsumer) gets a volume per pod on this
// node, provisioned into <data-dir>/storage and bind mounted by the agent
// with subPath, a read-only second mount, and fsGroup ownership for a
// non-root user. The pods are deleted and re-created and find their data;
// deleting the claims (reclaim Delete) removes the volumes and their
// directories.
func TestStatefulSetVolumes(t *testing.T) {
	e := setup(t)
	c := e.srv.Client
	ctx := context.Background()
	const ns = "default"
	_, _ = c.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	labels := map[string]string{"app": "vol"}
	script := `set -e
[ -f /data/id ] || echo "$HOSTNAME" > /data/id
echo boot >> /data/boots
echo sub > /sub/f
if touch /ro/x 2>/dev/null; then echo rw > /data/ro-mount; else echo ro > /data/ro-mount; fi
id -g > /data/gid
sleep 3600`
	set := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "vol"},
		Spec: appsv1.StatefulSetSpec{
			Replicas:            ptr.To[int32](3),
			ServiceName:         "vol",
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector:            &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](1),
					SecurityContext:               &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](1000), RunAsGroup: ptr.To[int64](1000), FSGroup: ptr.To[int64](2345)},
					Containers: []corev1.Container{{
						Name: "c", Image: testimages.Busybox, Command: []string{"sh", "-c", script},
						VolumeMounts: []corev1.VolumeMount{
							{Name: "data", MountPath: "/data"},
							{Name: "data", MountPath: "/sub", SubPath: "sub"},
							{Name: "data", MountPath: "/ro", ReadOnly: true},
						},
					}},
				},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{
				ObjectMeta: metav1.ObjectMeta{Name: "data"},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("16Mi")}},
				},
			}},
		},
	}
	if _, err := c.AppsV1().StatefulSets(ns).Create(ctx, set, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods := []string{"vol-0", "vol-1", "vol-2"}
	// dirs maps pod → its volume's directory, found through the claim.
	dirs := map[string]string{}
	uids := map[string]types.UID{}
	waitFile := func(dir, name, want string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err == nil && string(b) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s/%s = %q, %v; want %q", dir, name, b, err, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for _, name := range pods {
		p := e.waitPod(ns, name, "running", running)
		if p.Spec.NodeName != e.nodeName {
			t.Fatalf("pod %s on %q", name, p.Spec.NodeName)
		}
		uids[name] = p.UID
		pvc, err := c.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data-"+name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if pvc.Status.Phase != corev1.ClaimBound || pvc.Annotations["volume.kubernetes.io/selected-node"] != e.nodeName {
			t.Fatalf("claim %s: phase %s annotations %v", pvc.Name, pvc.Status.Phase, pvc.Annotations)
		}
		// The volume is in the storage directory the agent reports, not
		// the server's (a remote agent's disk).
		dir := filepath.Join(e.storageDir(), pvc.Spec.VolumeName)
		pv, err := c.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if pv.Spec.HostPath == nil || pv.Spec.HostPath.Path != dir {
			t.Fatalf("volume %s source %+v, want hostPath %s", pv.Name, pv.Spec.PersistentVolumeSource, dir)
		}
		dirs[name] = dir
		waitFile(dir, "id", name+"\n")
		waitFile(dir, "boots", "boot\n")
		waitFile(filepath.Join(dir, "sub"), "f", "sub\n")
		waitFile(dir, "ro-mount", "ro\n")
		waitFile(dir, "gid", "1000\n")
		// fsGroup owns the volume: the non-root user could write, the
		// files and folders have the group, folders are setgid.
		st, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if gid := st.Sys().(*syscall.Stat_t).Gid; gid != 2345 || st.Mode()&os.ModeSetgid == 0 {
			t.Errorf("volume root gid %d mode %v; want fsGroup 2345 and setgid", gid, st.Mode())
		}
		if fst, err := os.Stat(filepath.Join(dir, "id")); err != nil || fst.Sys().(*syscall.Stat_t).Gid != 2345 {
			t.Errorf("file made by the pod not in fsGroup: %v", err)
		}
	}

	// Pods deleted and re-created keep their data.
	for _, name := range pods {
		if err := c.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](1)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range pods {
		e.waitPod(ns, name, "re-created and running", func(p *corev1.Pod) bool { return p.UID != uids[name] && running(p) })
		waitFile(dirs[name], "boots", "boot\nboot\n")
		waitFile(dirs[name], "id", name+"\n")
	}

	// Scale to zero, delete the claims: Delete reclaim removes volumes and
	// directories.
	if err := c.AppsV1().StatefulSets(ns).Delete(ctx, "vol", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range pods {
		_ = c.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](1)})
	}
	for _, name := range pods {
		if err := c.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, "data-"+name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(90 * time.Second)
	for _, name := range pods {
		pv := filepath.Base(dirs[name])
		for {
			_, err := c.CoreV1().PersistentVolumes().Get(ctx, pv, metav1.GetOptions{})
			_, serr := os.Stat(dirs[name])
			if apierrors.IsNotFound(err) && os.IsNotExist(serr) {
				break
			}
			if time.Now().After(deadline) {
				claims, _ := c.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
				var st []string
				for _, cl := range claims.Items {
					st = append(st, fmt.Sprintf("%s %s fin=%v", cl.Name, cl.Status.Phase, cl.Finalizers))
				}
				t.Fatalf("volume %s: get %v, directory %v; claims %s", pv, err, serr, strings.Join(st, "; "))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}
