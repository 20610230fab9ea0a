package persistentvolume

import (
	"fmt"

	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Annotations and finalizers, as upstream.
const (
	AnnBindCompleted          = "pv.kubernetes.io/bind-completed"
	AnnBoundByController      = "pv.kubernetes.io/bound-by-controller"
	AnnDynamicallyProvisioned = "pv.kubernetes.io/provisioned-by"
	AnnSelectedNode           = "volume.kubernetes.io/selected-node"
	AnnStorageProvisioner     = "volume.kubernetes.io/storage-provisioner"
	AnnBetaStorageProvisioner = "volume.beta.kubernetes.io/storage-provisioner"
	AnnBetaStorageClass       = "volume.beta.kubernetes.io/storage-class"

	PVCProtectionFinalizer = "kubernetes.io/pvc-protection"
	PVProtectionFinalizer  = "kubernetes.io/pv-protection"
)

// ClaimClass is a claim's StorageClass name (the beta annotation wins, as
// upstream); "" means no class.
func ClaimClass(c *corev1.PersistentVolumeClaim) string {
	if v, ok := c.Annotations[AnnBetaStorageClass]; ok {
		return v
	}
	if c.Spec.StorageClassName != nil {
		return *c.Spec.StorageClassName
	}
	return ""
}

// VolumeClass is a volume's StorageClass name.
func VolumeClass(v *corev1.PersistentVolume) string {
	if c, ok := v.Annotations[AnnBetaStorageClass]; ok {
		return c
	}
	return v.Spec.StorageClassName
}

func volumeMode(m *corev1.PersistentVolumeMode) corev1.PersistentVolumeMode {
	if m == nil {
		return corev1.PersistentVolumeFilesystem
	}
	return *m
}

// ContainsAccessModes reports whether have includes every mode of want.
func ContainsAccessModes(have, want []corev1.PersistentVolumeAccessMode) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			return false
		}
	}
	return true
}

// BoundToClaim reports whether v's claimRef names c (and, when the
// claimRef has a UID, the same claim object).
func BoundToClaim(v *corev1.PersistentVolume, c *corev1.PersistentVolumeClaim) bool {
	r := v.Spec.ClaimRef
	if r == nil || r.Name != c.Name || r.Namespace != c.Namespace {
		return false
	}
	return r.UID == "" || r.UID == c.UID
}

// NodeAffinityMatches reports whether v may be used on node (volumes
// without node affinity fit every node).
func NodeAffinityMatches(v *corev1.PersistentVolume, node *corev1.Node) bool {
	if v.Spec.NodeAffinity == nil || v.Spec.NodeAffinity.Required == nil {
		return true
	}
	return framework.NodeSelectorMatches(v.Spec.NodeAffinity.Required, node)
}

// Mismatch says why volume v cannot serve claim c ("" when it can), for
// a claim that names v in spec.volumeName (upstream's
// checkVolumeSatisfyClaim): size, class, volume mode and access modes.
func Mismatch(v *corev1.PersistentVolume, c *corev1.PersistentVolumeClaim) string {
	req := c.Spec.Resources.Requests[corev1.ResourceStorage]
	capacity := v.Spec.Capacity[corev1.ResourceStorage]
	if capacity.Cmp(req) < 0 {
		return fmt.Sprintf("requested PV is too small: %s < %s", capacity.String(), req.String())
	}
	if VolumeClass(v) != ClaimClass(c) {
		return "storageClassName does not match"
	}
	if volumeMode(v.Spec.VolumeMode) != volumeMode(c.Spec.VolumeMode) {
		return fmt.Sprintf("incompatible volumeMode: claim %s, volume %s", volumeMode(c.Spec.VolumeMode), volumeMode(v.Spec.VolumeMode))
	}
	if !ContainsAccessModes(v.Spec.AccessModes, c.Spec.AccessModes) {
		return "incompatible accessMode"
	}
	return ""
}

// FindMatch picks the volume for claim c among volumes, as upstream's
// findMatchingVolume: a volume already bound to c wins; otherwise the
// smallest Available volume that is large enough and has c's class,
// volume mode, access modes and labels matching c's selector. With node
// set, only volumes whose node affinity admits node count. With delayed
// (a WaitForFirstConsumer class) and no node, only volumes already bound
// to c are returned: the choice waits for the scheduler.
func FindMatch(c *corev1.PersistentVolumeClaim, volumes []*corev1.PersistentVolume, node *corev1.Node, delayed bool) (*corev1.PersistentVolume, error) {
	req := c.Spec.Resources.Requests[corev1.ResourceStorage]
	var sel labels.Selector
	if c.Spec.Selector != nil {
		s, err := metav1.LabelSelectorAsSelector(c.Spec.Selector)
		if err != nil {
			return nil, fmt.Errorf("claim %s/%s: selector: %w", c.Namespace, c.Name, err)
		}
		sel = s
	}
	class := ClaimClass(c)
	var best *corev1.PersistentVolume
	for _, v := range volumes {
		capacity := v.Spec.Capacity[corev1.ResourceStorage]
		if capacity.Cmp(req) < 0 {
			continue
		}
		if volumeMode(v.Spec.VolumeMode) != volumeMode(c.Spec.VolumeMode) {
			continue
		}
		if v.DeletionTimestamp != nil {
			continue
		}
		if node != nil && !NodeAffinityMatches(v, node) {
			continue
		}
		if BoundToClaim(v, c) {
			return v, nil
		}
		if node == nil && delayed {
			continue
		}
		if v.Status.Phase != corev1.VolumeAvailable && v.Status.Phase != "" || v.Spec.ClaimRef != nil {
			continue
		}
		if sel != nil && !sel.Matches(labels.Set(v.Labels)) {
			continue
		}
		if VolumeClass(v) != class {
			continue
		}
		if !ContainsAccessModes(v.Spec.AccessModes, c.Spec.AccessModes) {
			continue
		}
		if best == nil || capacity.Cmp(best.Spec.Capacity[corev1.ResourceStorage]) < 0 {
			best = v
		}
	}
	return best, nil
}

// DelayedBinding reports whether claims of class wait for their first
// consumer.
func DelayedBinding(class *storagev1.StorageClass) bool {
	return class != nil && class.VolumeBindingMode != nil && *class.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer
}
