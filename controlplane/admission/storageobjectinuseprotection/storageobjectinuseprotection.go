// Package storageobjectinuseprotection is upstream's
// StorageObjectInUseProtection admission plugin: new
// PersistentVolumeClaims get the kubernetes.io/pvc-protection finalizer
// and new PersistentVolumes kubernetes.io/pv-protection, so they are
// protected from their first moment; the protection controllers
// (controlplane/controllers/persistentvolume) remove the finalizers once
// the objects are no longer in use.
package storageobjectinuseprotection

import (
	"context"
	"slices"

	"github.com/skiffhq/skiff/controlplane/apiserver"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Finalizers, as upstream.
const (
	PVCProtectionFinalizer = "kubernetes.io/pvc-protection"
	PVProtectionFinalizer  = "kubernetes.io/pv-protection"
)

// Plugin is the StorageObjectInUseProtection admission plugin.
type Plugin struct{}

var _ apiserver.AdmissionPlugin = Plugin{}

// New returns the plugin.
func New() Plugin { return Plugin{} }

// Name implements apiserver.AdmissionPlugin.
func (Plugin) Name() string { return "StorageObjectInUseProtection" }

// Admit implements apiserver.AdmissionPlugin.
func (Plugin) Admit(_ context.Context, a *apiserver.Attributes) error {
	if a.Operation != apiserver.OpCreate || a.Subresource != "" || a.Resource == nil || a.Resource.Group != "" {
		return nil
	}
	var meta *metav1.ObjectMeta
	var fin string
	switch o := a.Object.(type) {
	case *corev1.PersistentVolumeClaim:
		meta, fin = &o.ObjectMeta, PVCProtectionFinalizer
	case *corev1.PersistentVolume:
		meta, fin = &o.ObjectMeta, PVProtectionFinalizer
	default:
		return nil
	}
	if !slices.Contains(meta.Finalizers, fin) {
		meta.Finalizers = append(meta.Finalizers, fin)
	}
	return nil
}

// Validate implements apiserver.AdmissionPlugin.
func (Plugin) Validate(context.Context, *apiserver.Attributes) error { return nil }
