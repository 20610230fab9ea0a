package localpath

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/skiffhq/skiff/controlplane/controllers/persistentvolume/provisioner"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/util/retry"
)

// Deleting a volume on its node. A node may read only its own pods'
// volumes, so it cannot tell a deleted volume from one that is not its
// business; the controller tells it instead, in annotations of the
// node's own Node object, which the node can read and write:
//
//   - AnnDelete (written by the controller; NodeRestriction admission
//     keeps nodes from changing it) maps each released volume of the node
//     to delete to its directory, as JSON {"pvc-…": "/var/lib/skiff/storage/pvc-…"}.
//   - AnnDeleted (written by the node's agent) answers each entry of
//     AnnDelete: "" once the directory is gone, else why it was refused or
//     failed. The agent removes a directory only when it is exactly
//     <its storage directory>/<volume name> and not a symlink (CheckVolumeDir).
//
// The volume stays Released while its entry waits (provisioner.ErrDeletePending);
// an answer with an error fails the delete (VolumeFailedDelete, retried);
// an empty answer withdraws the entry and lets the binder delete the PV.
const (
	AnnDelete  = "local-path.skiff.io/delete"
	AnnDeleted = "local-path.skiff.io/deleted"
)

// ParseDirs reads an AnnDelete or AnnDeleted value ("" is empty).
func ParseDirs(s string) (map[string]string, error) {
	m := map[string]string{}
	if s == "" {
		return m, nil
	}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return map[string]string{}, fmt.Errorf("parse %q: %w", s, err)
	}
	return m, nil
}

// FormatDirs is the annotation value of m ("" when empty); keys are sorted,
// so equal maps give equal values.
func FormatDirs(m map[string]string) string {
	if len(m) == 0 {
		return ""
	}
	b, _ := json.Marshal(m) // a map[string]string always marshals
	return string(b)
}

// CheckVolumeDir reports whether dir may be removed as the directory of
// volume name in storage directory root: root is an absolute clean path,
// name a valid volume name (a DNS subdomain: no "/", no ".."), dir exactly
// root/name, and dir, when it exists, a real directory (not a symlink).
func CheckVolumeDir(root, name, dir string) error {
	if !filepath.IsAbs(root) || filepath.Clean(root) != root || root == "/" {
		return fmt.Errorf("storage directory %q is not an absolute clean path", root)
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return fmt.Errorf("refused: %q is not a volume name", name)
	}
	if dir != filepath.Join(root, name) {
		return fmt.Errorf("refused: %q is not the local-path directory %s", dir, filepath.Join(root, name))
	}
	st, err := os.Lstat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case st.Mode()&os.ModeSymlink != 0:
		return fmt.Errorf("refused: %s is a symlink", dir)
	case !st.IsDir():
		return fmt.Errorf("refused: %s is not a directory", dir)
	}
	return nil
}

// RemoveVolumeDir removes the directory of volume name in root after
// CheckVolumeDir. A directory already gone is not an error.
func RemoveVolumeDir(root, name, dir string) error {
	if err := CheckVolumeDir(root, name, dir); err != nil {
		return err
	}
	// os.RemoveAll does not follow symlinks inside dir (it unlinks them).
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// hostnameOfVolume is the kubernetes.io/hostname a local-path volume's
// node affinity requires ("" when it has no such single term).
func hostnameOfVolume(pv *corev1.PersistentVolume) string {
	a := pv.Spec.NodeAffinity
	if a == nil || a.Required == nil || len(a.Required.NodeSelectorTerms) != 1 {
		return ""
	}
	for _, e := range a.Required.NodeSelectorTerms[0].MatchExpressions {
		if e.Key == corev1.LabelHostname && e.Operator == corev1.NodeSelectorOpIn && len(e.Values) == 1 {
			return e.Values[0]
		}
	}
	return ""
}

// nodeOf is the node a volume lives on: the node named as the hostname
// its affinity requires (when that node's hostname label agrees), else
// the only node with that hostname label; nil when there is none. Two
// nodes claiming the hostname are an error, so relabelling itself never
// lets a node answer for another's volumes.
func (p *Provisioner) nodeOf(pv *corev1.PersistentVolume) (*corev1.Node, error) {
	h := hostnameOfVolume(pv)
	if h == "" {
		return nil, nil
	}
	if n, err := p.Nodes.Get(h); err == nil {
		if l, ok := n.Labels[corev1.LabelHostname]; !ok || l == h {
			return n, nil
		}
	} else if !apierrors.IsNotFound(err) {
		return nil, err
	}
	ns, err := p.Nodes.List(labels.SelectorFromSet(labels.Set{corev1.LabelHostname: h}))
	if err != nil {
		return nil, err
	}
	switch len(ns) {
	case 0:
		return nil, nil
	case 1:
		return ns[0], nil
	}
	return nil, fmt.Errorf("volume %s: %d nodes have hostname %q", pv.Name, len(ns), h)
}

// deleteOnNode asks the node's agent to remove the volume's directory
// and reports what it answered.
func (p *Provisioner) deleteOnNode(ctx context.Context, node *corev1.Node, pv *corev1.PersistentVolume) error {
	dir := pv.Spec.HostPath.Path
	reqs, _ := ParseDirs(node.Annotations[AnnDelete])
	if reqs[pv.Name] != dir {
		if err := p.setRequest(ctx, node.Name, pv.Name, dir); err != nil {
			return err
		}
		return fmt.Errorf("%w: asked node %s to remove %s", provisioner.ErrDeletePending, node.Name, dir)
	}
	acks, _ := ParseDirs(node.Annotations[AnnDeleted])
	msg, ok := acks[pv.Name]
	switch {
	case !ok:
		return fmt.Errorf("%w: waiting for node %s to remove %s", provisioner.ErrDeletePending, node.Name, dir)
	case msg != "":
		return fmt.Errorf("node %s: %s", node.Name, msg)
	}
	// Removed: withdraw the request; the volume may go.
	return p.setRequest(ctx, node.Name, pv.Name, "")
}

// setRequest sets (dir != "") or withdraws the node's AnnDelete entry for
// volume name, on the live Node with optimistic concurrency.
func (p *Provisioner) setRequest(ctx context.Context, nodeName, name, dir string) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := p.Client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		reqs, _ := ParseDirs(n.Annotations[AnnDelete])
		if dir == "" {
			delete(reqs, name)
		} else {
			reqs[name] = dir
		}
		val := any(nil)
		if s := FormatDirs(reqs); s != "" {
			val = s
		}
		if n.Annotations[AnnDelete] == FormatDirs(reqs) {
			return nil
		}
		patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
			"resourceVersion": n.ResourceVersion,
			"annotations":     map[string]any{AnnDelete: val},
		}})
		if err != nil {
			return err
		}
		_, err = p.Client.CoreV1().Nodes().Patch(ctx, nodeName, types.MergePatchType, patch, metav1.PatchOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("node %s: update %s: %w", nodeName, AnnDelete, err)
	}
	return nil
}
