package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Persistent volumes: a pod's claim is resolved to its bound
// PersistentVolume (the node authorizer lets a node get the claims of its
// pods and their volumes), whose hostPath or local directory is bind
// mounted like any other volume. The local-path provisioner's volumes are
// hostPath DirectoryOrCreate, so the agent makes their directory on first
// mount. Extra facts about a volume travel in the mounts map under
// internal keys (roKey, fsGroupKey).

// roKey marks a volume every container must mount read-only (the pod's
// claim says readOnly).
func roKey(volume string) string { return "\x00ro:" + volume }

// fsGroupKey marks a claim's volume whose ownership fsGroup manages
// (local volumes and local-path directories, as upstream's plugins that
// support ownership management).
func fsGroupKey(volume string) string { return "\x00fsgroup:" + volume }

// localPathProvisioner is the built-in provisioner whose hostPath volumes
// get fsGroup ownership.
const localPathProvisioner = "skiff.io/local-path"

// claimVolume returns the host directory of the volume bound to the
// pod's claim, after upstream's checks: the claim exists, is not being
// deleted and is Bound; the volume is bound to that claim. The directory
// is remembered for the pod's volume stats.
func (a *Agent) claimVolume(ctx context.Context, pod *corev1.Pod, v corev1.Volume, mounts map[string]string) (string, error) {
	dir, err := a.resolveClaimVolume(ctx, pod, v, mounts)
	if err == nil {
		a.summary.claims.record(pod.UID, v.Name, v.PersistentVolumeClaim.ClaimName, dir)
	}
	return dir, err
}

func (a *Agent) resolveClaimVolume(ctx context.Context, pod *corev1.Pod, v corev1.Volume, mounts map[string]string) (string, error) {
	name := v.PersistentVolumeClaim.ClaimName
	pvc, err := a.client.CoreV1().PersistentVolumeClaims(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("error processing PVC %s/%s: %w", pod.Namespace, name, err)
	}
	if pvc.DeletionTimestamp != nil {
		return "", fmt.Errorf("error processing PVC %s/%s: PVC is being deleted", pod.Namespace, name)
	}
	if pvc.Status.Phase != corev1.ClaimBound || pvc.Spec.VolumeName == "" {
		return "", fmt.Errorf("error processing PVC %s/%s: PVC is not bound (phase %q)", pod.Namespace, name, pvc.Status.Phase)
	}
	pv, err := a.client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("error processing PVC %s/%s: volume %s: %w", pod.Namespace, name, pvc.Spec.VolumeName, err)
	}
	if r := pv.Spec.ClaimRef; r == nil || r.Namespace != pvc.Namespace || r.Name != pvc.Name || r.UID != pvc.UID {
		return "", fmt.Errorf("error processing PVC %s/%s: volume %s is not bound to it", pod.Namespace, name, pv.Name)
	}
	if v.PersistentVolumeClaim.ReadOnly {
		mounts[roKey(v.Name)] = "1"
	}
	switch {
	case pv.Spec.HostPath != nil:
		if pv.Annotations["pv.kubernetes.io/provisioned-by"] == localPathProvisioner {
			mounts[fsGroupKey(v.Name)] = "1"
		}
		return a.prepareVolume(ctx, pod, corev1.Volume{Name: v.Name, VolumeSource: corev1.VolumeSource{HostPath: pv.Spec.HostPath}})
	case pv.Spec.Local != nil:
		st, err := os.Stat(pv.Spec.Local.Path)
		if err != nil {
			return "", fmt.Errorf("local volume %s: %w", pv.Name, err)
		}
		if !st.IsDir() {
			return "", fmt.Errorf("local volume %s: %s is not a directory (block local volumes are not supported)", pv.Name, pv.Spec.Local.Path)
		}
		mounts[fsGroupKey(v.Name)] = "1"
		return pv.Spec.Local.Path, nil
	default:
		return "", fmt.Errorf("volume %s: only hostPath and local persistent volumes are supported by this agent", pv.Name)
	}
}

// makeSubPath creates a missing subPath directory of the volume at base;
// with an fsGroup it is group-owned, group-writable and setgid like the
// rest of an fsGroup volume, so a non-root container can write where it
// mounts it. Every step happens inside base (os.Root): a symlink on the
// way that leads out of the volume fails the call, so a container cannot
// make the agent create or chown a directory elsewhere on the host.
func makeSubPath(base, subPath string, pod *corev1.Pod) error {
	root, err := os.OpenRoot(base)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := root.MkdirAll(subPath, 0o755); err != nil {
		return err
	}
	psc := pod.Spec.SecurityContext
	if psc == nil || psc.FSGroup == nil {
		return nil
	}
	if err := root.Lchown(subPath, -1, int(*psc.FSGroup)); err != nil {
		return err
	}
	return root.Chmod(subPath, 0o775|os.ModeSetgid)
}

// Memory-backed emptyDirs: the volume's folder is a tmpfs mount, sized as
// upstream (the smallest of the node's memory, the pod's memory limit when
// every container has one, and the volume's sizeLimit), unmounted when the
// pod's folder is removed.

// mountTmpfs makes dir a tmpfs of size bytes, unless it is one already
// (the pod's earlier syncs, or an agent before a restart).
func mountTmpfs(dir string, size int64) error {
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	mounted, err := isMountPoint(dir)
	if err != nil || mounted {
		return err
	}
	data := ""
	if size > 0 {
		data = fmt.Sprintf("size=%d", size)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, data); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	return nil
}

// isMountPoint reports whether dir is on another file system than its
// parent (what a tmpfs mount on it makes it).
func isMountPoint(dir string) (bool, error) {
	var st, parent unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return false, fmt.Errorf("stat %s: %w", dir, err)
	}
	if err := unix.Lstat(filepath.Dir(dir), &parent); err != nil {
		return false, fmt.Errorf("stat %s: %w", filepath.Dir(dir), err)
	}
	return st.Dev != parent.Dev, nil
}

// unmountTmpfsVolumes unmounts every mount point directly below dir (the
// pod's emptyDir folder); a missing dir is nothing to do.
func unmountTmpfsVolumes(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if !e.IsDir() {
			continue
		}
		mounted, err := isMountPoint(p)
		if err != nil {
			return err
		}
		if !mounted {
			continue
		}
		if err := unix.Unmount(p, 0); err != nil {
			// Still busy (a process of a container being torn down):
			// detach it, the kernel frees it when the last user goes.
			if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
				return fmt.Errorf("unmount %s: %w", p, err)
			}
		}
	}
	return nil
}

// emptyDirMemorySize is upstream's size of a memory-backed emptyDir.
func emptyDirMemorySize(pod *corev1.Pod, ed *corev1.EmptyDirVolumeSource) int64 {
	var si unix.Sysinfo_t
	size := int64(0)
	if unix.Sysinfo(&si) == nil {
		size = int64(si.Totalram) * int64(si.Unit)
	}
	fits := func(n int64) bool { return n > 0 && (size == 0 || n <= size) }
	if lim := podMemoryLimit(pod); fits(lim) {
		size = lim
	}
	if ed.SizeLimit != nil && fits(ed.SizeLimit.Value()) {
		size = ed.SizeLimit.Value()
	}
	return size
}

// podMemoryLimit is the pod's memory limit as its cgroup would have it:
// the sum of its containers' limits (at least the largest init
// container's), 0 when some container has none.
func podMemoryLimit(pod *corev1.Pod) int64 {
	var sum, initMax int64
	for _, c := range pod.Spec.Containers {
		q, ok := c.Resources.Limits[corev1.ResourceMemory]
		if !ok || q.Value() <= 0 {
			return 0
		}
		sum += q.Value()
	}
	for _, c := range pod.Spec.InitContainers {
		q, ok := c.Resources.Limits[corev1.ResourceMemory]
		if !ok || q.Value() <= 0 {
			return 0
		}
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sum += q.Value()
		} else {
			initMax = max(initMax, q.Value())
		}
	}
	return max(sum, initMax)
}
