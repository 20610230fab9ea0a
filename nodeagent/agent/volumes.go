package agent

import (
	"context"
	"fmt"
	"os"

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
// deleted and is Bound; the volume is bound to that claim.
func (a *Agent) claimVolume(ctx context.Context, pod *corev1.Pod, v corev1.Volume, mounts map[string]string) (string, error) {
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

// makeSubPath creates a missing subPath directory; with an fsGroup it is
// group-owned, group-writable and setgid like the rest of an fsGroup
// volume, so a non-root container can write where it mounts it.
func makeSubPath(dir string, pod *corev1.Pod) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	psc := pod.Spec.SecurityContext
	if psc == nil || psc.FSGroup == nil {
		return nil
	}
	if err := os.Lchown(dir, -1, int(*psc.FSGroup)); err != nil {
		return err
	}
	return os.Chmod(dir, 0o775|os.ModeSetgid)
}
