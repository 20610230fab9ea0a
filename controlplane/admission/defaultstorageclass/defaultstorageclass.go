// Package defaultstorageclass is upstream's DefaultStorageClass admission
// plugin: a PersistentVolumeClaim created without spec.storageClassName
// gets the default StorageClass (annotated
// storageclass.kubernetes.io/is-default-class=true; the newest one when
// several are marked, as upstream since 1.26).
package defaultstorageclass

import (
	"context"

	"github.com/skiffhq/skiff/controlplane/admission/internal/objects"
	"github.com/skiffhq/skiff/controlplane/apiserver"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
)

const (
	// IsDefaultAnnotation marks the default class.
	IsDefaultAnnotation = "storageclass.kubernetes.io/is-default-class"
	// BetaIsDefaultAnnotation is the older spelling, still honoured.
	BetaIsDefaultAnnotation = "storageclass.beta.kubernetes.io/is-default-class"
	betaClassAnnotation     = "volume.beta.kubernetes.io/storage-class"
)

// Plugin is the DefaultStorageClass admission plugin.
type Plugin struct{ r *objects.Reader }

var _ apiserver.AdmissionPlugin = (*Plugin)(nil)

// New returns the plugin.
func New(r *objects.Reader) *Plugin { return &Plugin{r: r} }

// Name implements apiserver.AdmissionPlugin.
func (p *Plugin) Name() string { return "DefaultStorageClass" }

// Admit implements apiserver.AdmissionPlugin.
func (p *Plugin) Admit(ctx context.Context, a *apiserver.Attributes) error {
	if a.Operation != apiserver.OpCreate || a.Subresource != "" || a.Resource == nil ||
		a.Resource.Group != "" || a.Resource.Plural != "persistentvolumeclaims" {
		return nil
	}
	pvc, ok := a.Object.(*corev1.PersistentVolumeClaim)
	if !ok || pvc.Spec.StorageClassName != nil || pvc.Annotations[betaClassAnnotation] != "" {
		return nil
	}
	def, err := objects.NewestDefault(p.r, "storage.k8s.io", "storageclasses", IsDefault)
	if err != nil || def == nil {
		return err
	}
	name := def.Name
	pvc.Spec.StorageClassName = &name
	return nil
}

// Validate implements apiserver.AdmissionPlugin.
func (p *Plugin) Validate(context.Context, *apiserver.Attributes) error { return nil }

// IsDefault reports whether sc is marked as the default class.
func IsDefault(sc *storagev1.StorageClass) bool {
	return sc.Annotations[IsDefaultAnnotation] == "true" || sc.Annotations[BetaIsDefaultAnnotation] == "true"
}
