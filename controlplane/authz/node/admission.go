package node

import (
	"context"
	"fmt"

	"github.com/skiffhq/skiff/controlplane/apiserver"
	"github.com/skiffhq/skiff/controlplane/controllers/persistentvolume/provisioner/localpath"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// MirrorPodAnnotation marks the pods a kubelet creates for its static pods.
const MirrorPodAnnotation = "kubernetes.io/config.mirror"

// Restriction is upstream's NodeRestriction admission plugin for what the
// authorizer cannot see: the names inside created objects.
type Restriction struct{}

var _ apiserver.AdmissionPlugin = Restriction{}

// Name implements apiserver.AdmissionPlugin.
func (Restriction) Name() string { return "NodeRestriction" }

// Admit implements apiserver.AdmissionPlugin.
func (Restriction) Admit(context.Context, *apiserver.Attributes) error { return nil }

// Validate implements apiserver.AdmissionPlugin.
func (Restriction) Validate(_ context.Context, a *apiserver.Attributes) error {
	node, ok := NodeName(a.User)
	if !ok || a.Resource == nil {
		return nil
	}
	gr := a.Resource.GVR().GroupResource()
	forbid := func(format string, args ...any) error {
		return apierrors.NewForbidden(gr, a.Name, fmt.Errorf(format, args...))
	}
	if a.Operation == apiserver.OpUpdate {
		// The controller's requests to a node (which of its local-path
		// volumes to delete) are not the node's to change.
		if nw, ok := a.Object.(*corev1.Node); ok {
			if old, ok := a.OldObject.(*corev1.Node); ok && nw.Annotations[localpath.AnnDelete] != old.Annotations[localpath.AnnDelete] {
				return forbid("node %q is not allowed to modify annotation %q", node, localpath.AnnDelete)
			}
		}
		return nil
	}
	if a.Operation != apiserver.OpCreate || a.Subresource != "" {
		return nil
	}
	switch obj := a.Object.(type) {
	case *corev1.Node:
		if obj.Name != node {
			return forbid("node %q is not allowed to modify node %q", node, obj.Name)
		}
		if _, ok := obj.Annotations[localpath.AnnDelete]; ok {
			return forbid("node %q is not allowed to set annotation %q", node, localpath.AnnDelete)
		}
	case *coordinationv1.Lease:
		if a.Namespace == LeaseNamespace && obj.Name != node {
			return forbid("can only access node lease with the same name as the requesting node")
		}
	case *corev1.Pod:
		if _, mirror := obj.Annotations[MirrorPodAnnotation]; !mirror {
			return forbid("pod does not have %q annotation, node %q can only create mirror pods", MirrorPodAnnotation, node)
		}
		if obj.Spec.NodeName != node {
			return forbid("node %q can only create pods with spec.nodeName set to itself", node)
		}
	}
	return nil
}
