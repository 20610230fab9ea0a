// Package provisioner is the interface between the PV binder and the
// dynamic provisioners built into Skiff. A provisioner is one package that
// implements Provisioner; the binder calls it for claims whose
// StorageClass names it (storageClass.provisioner == Name()). local-path
// (sub-package localpath) is the first; NFS or a CSI bridge would be others.
package provisioner

import (
	"context"
	"errors"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// ErrUnsupported marks a claim the provisioner cannot serve (its access
// modes, its selector, a missing node); the claim stays Pending with a
// ProvisioningFailed event carrying the message.
var ErrUnsupported = errors.New("unsupported claim")

// ErrDeletePending is returned by Delete while the storage is being
// removed by someone else (a node's agent): the volume stays Released and
// Delete is called again later, as upstream does for a volume its plugin
// is still deleting.
var ErrDeletePending = errors.New("volume deletion pending")

// Options describe one volume to provision.
type Options struct {
	// PVName is the name the volume must get (pvc-<claim uid>).
	PVName string
	// Claim is the claim the volume is for.
	Claim *corev1.PersistentVolumeClaim
	// Class is the claim's StorageClass.
	Class *storagev1.StorageClass
	// SelectedNode is the node the scheduler chose for the claim's first
	// consumer (WaitForFirstConsumer classes); nil for Immediate classes.
	SelectedNode *corev1.Node
}

// Provisioner creates and deletes the storage behind PersistentVolumes.
type Provisioner interface {
	// Name is the provisioner name StorageClasses refer to.
	Name() string
	// AccessModes are the access modes its volumes support.
	AccessModes() []corev1.PersistentVolumeAccessMode
	// Provision makes the storage and returns the PV that describes it:
	// its source, capacity and node affinity. The binder fills name,
	// claimRef, class, reclaim policy, volume mode, mount options and the
	// provisioned-by annotation. An error wrapping ErrUnsupported is final
	// for this claim spec; other errors are retried.
	Provision(ctx context.Context, opts Options) (*corev1.PersistentVolume, error)
	// Delete removes the storage of a released volume with reclaim policy
	// Delete. Deleting storage that is already gone is not an error; an
	// error wrapping ErrDeletePending means the removal is under way.
	Delete(ctx context.Context, pv *corev1.PersistentVolume) error
}

// Expander is implemented by provisioners whose volumes can grow; the
// binder calls it for bound claims of classes with allowVolumeExpansion
// whose request exceeds their capacity, then records the new capacity on
// the volume and the claim.
type Expander interface {
	Expand(ctx context.Context, pv *corev1.PersistentVolume, size resource.Quantity) error
}
