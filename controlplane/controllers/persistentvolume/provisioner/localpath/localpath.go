// Package localpath is Skiff's built-in local-path dynamic provisioner
// (StorageClass provisioner "skiff.io/local-path", as k3s's local-path):
// each volume is a directory <base>/<pv-name> on one node, exposed as a
// hostPath volume of type DirectoryOrCreate with required node affinity
// to that node.
//
// Where the directory lives: the node agent creates it when it first
// mounts the volume (it owns the node's disk; DirectoryOrCreate), so
// provisioning needs no access to the node. Delete removes the directory
// when it is on this machine (the server's own node, or nodes sharing
// the machine, as in tests); a directory on a remote agent's disk is left
// behind (see README.md).
package localpath

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/skiffhq/skiff/controlplane/controllers/persistentvolume/provisioner"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Name is the provisioner name StorageClasses use.
const Name = "skiff.io/local-path"

// ClassName is the default StorageClass the server creates for it.
const ClassName = "local-path"

// The node agent reports its storage directory's space in two
// annotations on its Node; the capacity controller
// (persistentvolume.CapacityController) turns them into one
// CSIStorageCapacity per node and local-path class.
const (
	// AnnAvailableBytes is the available space (statfs f_bavail ×
	// f_bsize, in bytes) of the filesystem holding the node's storage
	// directory.
	AnnAvailableBytes = "local-path.skiff.io/available-bytes"
	// AnnUsedBytes is the space (in bytes, as du counts it) used by the
	// volume directories in the node's storage directory.
	AnnUsedBytes = "local-path.skiff.io/used-bytes"
)

// Provisioner makes directories under Base.
type Provisioner struct {
	// Base is the storage directory (<data-dir>/storage).
	Base string
}

var (
	_ provisioner.Provisioner = (*Provisioner)(nil)
	_ provisioner.Expander    = (*Provisioner)(nil)
)

// New returns a local-path provisioner keeping volumes under base.
func New(base string) *Provisioner { return &Provisioner{Base: base} }

// Name implements provisioner.Provisioner.
func (p *Provisioner) Name() string { return Name }

// AccessModes implements provisioner.Provisioner: a directory on one node
// can be shared by the pods of that node, not across nodes.
func (p *Provisioner) AccessModes() []corev1.PersistentVolumeAccessMode {
	return []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce, corev1.ReadWriteOncePod}
}

// Provision implements provisioner.Provisioner.
func (p *Provisioner) Provision(_ context.Context, o provisioner.Options) (*corev1.PersistentVolume, error) {
	if o.SelectedNode == nil {
		return nil, fmt.Errorf("%w: %s needs a node: use a StorageClass with volumeBindingMode WaitForFirstConsumer", provisioner.ErrUnsupported, Name)
	}
	if o.Claim.Spec.Selector != nil {
		return nil, fmt.Errorf("%w: claim Selector is not supported", provisioner.ErrUnsupported)
	}
	if o.Claim.Spec.VolumeMode != nil && *o.Claim.Spec.VolumeMode == corev1.PersistentVolumeBlock {
		return nil, fmt.Errorf("%w: %s does not support volumeMode Block", provisioner.ErrUnsupported, Name)
	}
	size := o.Claim.Spec.Resources.Requests[corev1.ResourceStorage]
	if size.IsZero() {
		size = resource.MustParse("1Gi")
	}
	dirType := corev1.HostPathDirectoryOrCreate
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: o.PVName},
		Spec: corev1.PersistentVolumeSpec{
			Capacity: corev1.ResourceList{corev1.ResourceStorage: size},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: p.Path(o.PVName), Type: &dirType},
			},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{hostnameOf(o.SelectedNode)}}},
			}}}},
		},
	}, nil
}

// hostnameOf is the node's kubernetes.io/hostname label (the node name
// when it has none).
func hostnameOf(n *corev1.Node) string {
	if h := n.Labels[corev1.LabelHostname]; h != "" {
		return h
	}
	return n.Name
}

// Path is the directory of volume pvName.
func (p *Provisioner) Path(pvName string) string { return filepath.Join(p.Base, pvName) }

// Delete implements provisioner.Provisioner: the volume's directory is
// removed when it is on this machine. Only <Base>/<pv-name> is ever
// touched, whatever else the PV says.
func (p *Provisioner) Delete(_ context.Context, pv *corev1.PersistentVolume) error {
	if pv.Spec.HostPath == nil {
		return fmt.Errorf("volume %s has no hostPath: not made by %s", pv.Name, Name)
	}
	dir := filepath.Clean(pv.Spec.HostPath.Path)
	if filepath.Dir(dir) != filepath.Clean(p.Base) || filepath.Base(dir) != pv.Name {
		return fmt.Errorf("volume %s: path %s is not a local-path directory under %s", pv.Name, dir, p.Base)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// Expand implements provisioner.Expander: a directory has no size of its
// own (capacity is not enforced), so growing it is only bookkeeping.
func (p *Provisioner) Expand(context.Context, *corev1.PersistentVolume, resource.Quantity) error {
	return nil
}
