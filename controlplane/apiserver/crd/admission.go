package crd

import (
	"context"
	"fmt"

	"github.com/skiffhq/skiff/controlplane/apiserver"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Admission refuses to create custom resources of a CRD that is being
// deleted, as upstream's custom resource handler does.
type Admission struct{}

var _ apiserver.AdmissionPlugin = Admission{}

// Name implements apiserver.AdmissionPlugin.
func (Admission) Name() string { return "CustomResourceTerminating" }

// Admit implements apiserver.AdmissionPlugin.
func (Admission) Admit(_ context.Context, a *apiserver.Attributes) error {
	if a.Operation != apiserver.OpCreate || a.Resource == nil || a.Resource.CRD == nil || !isTerminating(a.Resource.CRD) {
		return nil
	}
	err := apierrors.NewMethodNotSupported(a.Resource.GVR().GroupResource(), "create")
	err.ErrStatus.Message = fmt.Sprintf("%s not allowed while custom resource definition is terminating", "create")
	return err
}

// Validate implements apiserver.AdmissionPlugin.
func (Admission) Validate(context.Context, *apiserver.Attributes) error { return nil }
