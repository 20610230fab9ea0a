// Package localpath is Skiff's built-in local-path dynamic provisioner
// (StorageClass provisioner "skiff.io/local-path", as k3s's local-path):
// each volume is a directory <base>/<pv-name> on one node, exposed as a
// hostPath volume of type DirectoryOrCreate with required node affinity
// to that node.
//
// Where the directory lives: in the storage directory the node's agent
// reports (AnnStorageDir; the provisioner's own base for nodes that
// report none). The agent creates it when it first mounts the volume (it
// owns the node's disk; DirectoryOrCreate), so provisioning needs no
// access to the node.
//
// Delete goes through the node too (node.go): the provisioner lists the
// directory in an annotation on the volume's Node (AnnDelete, which only
// the controller may write), the agent removes it, after checking that it
// is <storage dir>/<pv name>, and answers in AnnDeleted; only then is the
// volume deleted. Nodes that report no storage directory (hollow nodes)
// or are gone have their directories removed here, when they are under
// Base on this machine.
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
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
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
	// AnnStorageDir is the node's storage directory (an absolute, clean
	// path), where the provisioner puts the node's volumes.
	AnnStorageDir = "local-path.skiff.io/storage-dir"
)

// Provisioner makes directories under Base, or under the storage
// directory the volume's node reports.
type Provisioner struct {
	// Base is the storage directory (<data-dir>/storage).
	Base string
	// Client and Nodes reach the volumes' nodes for Delete; without them
	// only directories under Base on this machine are removed.
	Client kubernetes.Interface
	Nodes  corelisters.NodeLister
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
				HostPath: &corev1.HostPathVolumeSource{Path: filepath.Join(p.dirOf(o.SelectedNode), o.PVName), Type: &dirType},
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

// Path is the directory of volume pvName on a node without a storage
// directory of its own.
func (p *Provisioner) Path(pvName string) string { return filepath.Join(p.Base, pvName) }

// dirOf is the storage directory of node: the one its agent reports when
// it is an absolute, clean path, else Base.
func (p *Provisioner) dirOf(node *corev1.Node) string {
	if node != nil {
		if d := node.Annotations[AnnStorageDir]; d != "" && filepath.IsAbs(d) && filepath.Clean(d) == d && d != "/" {
			return d
		}
	}
	return p.Base
}

// Delete implements provisioner.Provisioner. A volume whose node reports
// a storage directory is removed by that node's agent (deleteOnNode);
// otherwise the directory is removed here when it is <Base>/<pv-name>.
// Only such a directory is ever touched, whatever else the PV says.
func (p *Provisioner) Delete(ctx context.Context, pv *corev1.PersistentVolume) error {
	if pv.Spec.HostPath == nil {
		return fmt.Errorf("volume %s has no hostPath: not made by %s", pv.Name, Name)
	}
	if p.Nodes != nil && p.Client != nil {
		node, err := p.nodeOf(pv)
		if err != nil {
			return err
		}
		if node != nil && node.Annotations[AnnStorageDir] != "" {
			return p.deleteOnNode(ctx, node, pv)
		}
	}
	dir := filepath.Clean(pv.Spec.HostPath.Path)
	if err := CheckVolumeDir(p.Base, pv.Name, dir); err != nil {
		return fmt.Errorf("volume %s: %w", pv.Name, err)
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
