// Package persistentvolumeclaimresize is upstream's
// PersistentVolumeClaimResize admission plugin: an update that grows a
// claim's storage request is refused (403 Forbidden) unless the claim is
// Bound and its StorageClass (the same before and after the update) has
// allowVolumeExpansion: true. Shrinking is left to validation, which
// refuses a request below status.capacity (422), as upstream.
package persistentvolumeclaimresize

import (
	"context"
	"errors"

	"github.com/skiffhq/skiff/controlplane/admission/internal/objects"
	"github.com/skiffhq/skiff/controlplane/apiserver"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Name is the plugin's upstream name.
const Name = "PersistentVolumeClaimResize"

// Upstream's messages.
const (
	msgNotBound   = "Only bound persistent volume claims can be expanded"
	msgNoResize   = "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize"
	betaClassAnno = "volume.beta.kubernetes.io/storage-class"
)

// Plugin is the PersistentVolumeClaimResize admission plugin.
type Plugin struct{ r *objects.Reader }

var _ apiserver.AdmissionPlugin = (*Plugin)(nil)

// New returns the plugin; classes are read from the watch cache.
func New(r *objects.Reader) *Plugin { return &Plugin{r: r} }

// Name implements apiserver.AdmissionPlugin.
func (*Plugin) Name() string { return Name }

// Admit implements apiserver.AdmissionPlugin (the plugin only validates).
func (*Plugin) Admit(context.Context, *apiserver.Attributes) error { return nil }

// Validate implements apiserver.AdmissionPlugin.
func (p *Plugin) Validate(_ context.Context, a *apiserver.Attributes) error {
	if a.Operation != apiserver.OpUpdate || a.Subresource != "" || a.Resource == nil ||
		a.Resource.Group != "" || a.Resource.Plural != "persistentvolumeclaims" {
		return nil
	}
	pvc, ok := a.Object.(*corev1.PersistentVolumeClaim)
	if !ok {
		return nil
	}
	old, ok := a.OldObject.(*corev1.PersistentVolumeClaim)
	if !ok {
		return nil
	}
	newSize, oldSize := pvc.Spec.Resources.Requests[corev1.ResourceStorage], old.Spec.Resources.Requests[corev1.ResourceStorage]
	if newSize.Cmp(oldSize) <= 0 {
		return nil
	}
	forbid := func(msg string) error {
		return apierrors.NewForbidden(a.Resource.GVR().GroupResource(), a.Name, errors.New(msg))
	}
	if old.Status.Phase != corev1.ClaimBound {
		return forbid(msgNotBound)
	}
	if !p.allowResize(claimClass(pvc), claimClass(old)) {
		return forbid(msgNoResize)
	}
	return nil
}

// allowResize reports whether the claim's class, unchanged by the
// update, explicitly allows expansion.
func (p *Plugin) allowResize(class, oldClass string) bool {
	if class == "" || class != oldClass {
		return false
	}
	sc, err := objects.Get[storagev1.StorageClass](p.r, "storage.k8s.io", "storageclasses", "", class)
	if err != nil {
		return false
	}
	return sc.AllowVolumeExpansion != nil && *sc.AllowVolumeExpansion
}

// claimClass is the claim's class: the beta annotation wins over
// spec.storageClassName, as upstream.
func claimClass(c *corev1.PersistentVolumeClaim) string {
	if v, ok := c.Annotations[betaClassAnno]; ok {
		return v
	}
	if c.Spec.StorageClassName != nil {
		return *c.Spec.StorageClassName
	}
	return ""
}
