package crd

import (
	"context"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	"k8s.io/apiextensions-apiserver/pkg/apihelpers"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// CleanupFinalizer is the finalizer a deleted CRD carries until all its
// custom resources are gone (upstream adds it when deletion starts).
const CleanupFinalizer = "customresourcecleanup.apiextensions.k8s.io"

// InstallDefinitionHooks gives the registered CustomResourceDefinition
// resource its upstream semantics: defaults, validation, stored versions,
// and the cleanup finalizer on deletion. Call it before serving.
func InstallDefinitionHooks(reg *registry.Registry) {
	res, ok := reg.Get(apiextensionsv1.GroupName, "v1", "customresourcedefinitions")
	if !ok {
		return
	}
	h := &res.Hooks
	h.Default = func(obj runtime.Object) {
		apiextensionsv1.SetObjectDefaults_CustomResourceDefinition(obj.(*apiextensionsv1.CustomResourceDefinition))
	}
	h.PrepareForCreate = func(_ context.Context, obj runtime.Object) {
		crd := obj.(*apiextensionsv1.CustomResourceDefinition)
		crd.Status = apiextensionsv1.CustomResourceDefinitionStatus{}
		addStoredVersion(crd)
	}
	h.PrepareForUpdate = func(_ context.Context, obj, _ runtime.Object) {
		crd := obj.(*apiextensionsv1.CustomResourceDefinition)
		// Defaults first, so that re-applying a manifest that omits
		// defaulted fields does not look like a spec change.
		apiextensionsv1.SetObjectDefaults_CustomResourceDefinition(crd)
		addStoredVersion(crd)
	}
	h.Validate = func(_ context.Context, obj runtime.Object) field.ErrorList {
		return ValidateDefinition(obj.(*apiextensionsv1.CustomResourceDefinition))
	}
	h.ValidateUpdate = func(_ context.Context, obj, old runtime.Object) field.ErrorList {
		return ValidateDefinitionUpdate(obj.(*apiextensionsv1.CustomResourceDefinition), old.(*apiextensionsv1.CustomResourceDefinition))
	}
	h.ValidateStatusUpdate = func(_ context.Context, obj, _ runtime.Object) field.ErrorList {
		return ValidateDefinitionStatus(obj.(*apiextensionsv1.CustomResourceDefinition))
	}
	// Deletion always waits for the cleanup: the first DELETE adds the
	// finalizer and the Terminating condition.
	h.PendingFinalization = func(obj runtime.Object) bool {
		crd := obj.(*apiextensionsv1.CustomResourceDefinition)
		return crd.DeletionTimestamp == nil || apihelpers.CRDHasFinalizer(crd, CleanupFinalizer)
	}
	h.PrepareForDelete = func(_ context.Context, obj runtime.Object) {
		crd := obj.(*apiextensionsv1.CustomResourceDefinition)
		if !apihelpers.CRDHasFinalizer(crd, CleanupFinalizer) {
			crd.Finalizers = append(crd.Finalizers, CleanupFinalizer)
		}
		apihelpers.SetCRDCondition(crd, apiextensionsv1.CustomResourceDefinitionCondition{
			Type:    apiextensionsv1.Terminating,
			Status:  apiextensionsv1.ConditionTrue,
			Reason:  "InstanceDeletionPending",
			Message: "CustomResourceDefinition marked for deletion; all resources will be deleted before the CRD is removed",
		})
	}
}

// addStoredVersion records the storage version in status.storedVersions.
func addStoredVersion(crd *apiextensionsv1.CustomResourceDefinition) {
	for _, v := range crd.Spec.Versions {
		if v.Storage {
			if !apihelpers.IsStoredVersion(crd, v.Name) {
				crd.Status.StoredVersions = append(crd.Status.StoredVersions, v.Name)
			}
			return
		}
	}
}

// isTerminating reports whether a CRD is being deleted.
func isTerminating(crd *apiextensionsv1.CustomResourceDefinition) bool {
	return crd.DeletionTimestamp != nil || apihelpers.IsCRDConditionTrue(crd, apiextensionsv1.Terminating)
}
