package podutil

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// Claimer decides which pods one controller object owns, as upstream's
// ControllerRefManager does: it adopts matching orphans (after re-reading
// the owner from the API server once, so a stale cache never adopts for an
// object that is gone or being deleted) and releases owned pods whose labels
// stopped matching. Both are strategic-merge patches preconditioned on the
// pod's UID.
type Claimer struct {
	Client   kubernetes.Interface
	Owner    metav1.Object
	GVK      schema.GroupVersionKind
	Selector labels.Selector
	// Fresh reads the owner from the API server; required for adoption.
	Fresh func(ctx context.Context) (metav1.Object, error)
	// Adoptable, when set, further restricts which orphans may be adopted
	// (StatefulSet members by name, a Job that has not finished).
	Adoptable func(*corev1.Pod) bool
	// KeepUnmatched keeps owned pods whose labels no longer match instead of
	// releasing them (Jobs track their pods to completion).
	KeepUnmatched bool
}

// Claim returns the pods Owner controls after adoption and release.
// Adopted pods are returned as the API server answered the patch.
func (c *Claimer) Claim(ctx context.Context, pods []*corev1.Pod) ([]*corev1.Pod, error) {
	var owned []*corev1.Pod
	var errs []error
	var canAdopt *bool
	deleting := c.Owner.GetDeletionTimestamp() != nil
	for _, p := range pods {
		ref := metav1.GetControllerOf(p)
		if ref != nil && ref.UID != c.Owner.GetUID() {
			continue // another controller's: no need to match its labels
		}
		match := c.Selector.Matches(labels.Set(p.Labels))
		switch {
		case ref != nil && ref.UID == c.Owner.GetUID():
			if match || c.KeepUnmatched {
				owned = append(owned, p)
				continue
			}
			if deleting {
				continue
			}
			_, err := c.patchOwner(ctx, p, map[string]any{"$patch": "delete", "uid": c.Owner.GetUID()})
			// Invalid: the UID precondition failed, it is another pod now.
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsInvalid(err) {
				errs = append(errs, fmt.Errorf("release pod %s/%s: %w", p.Namespace, p.Name, err))
			}
		case ref == nil && match && !deleting && p.DeletionTimestamp == nil:
			if c.Adoptable != nil && !c.Adoptable(p) {
				continue
			}
			if canAdopt == nil {
				ok := c.ownerLive(ctx)
				canAdopt = &ok
			}
			if !*canAdopt {
				continue
			}
			got, err := c.patchOwner(ctx, p, NewControllerRef(c.Owner, c.GVK))
			if err != nil {
				if !apierrors.IsNotFound(err) {
					errs = append(errs, fmt.Errorf("adopt pod %s/%s: %w", p.Namespace, p.Name, err))
				}
				continue
			}
			owned = append(owned, got)
		}
	}
	return owned, errors.Join(errs...)
}

func (c *Claimer) ownerLive(ctx context.Context) bool {
	if c.Fresh == nil {
		return false
	}
	fresh, err := c.Fresh(ctx)
	return err == nil && fresh.GetUID() == c.Owner.GetUID() && fresh.GetDeletionTimestamp() == nil
}

func (c *Claimer) patchOwner(ctx context.Context, p *corev1.Pod, ref any) (*corev1.Pod, error) {
	b, err := json.Marshal(map[string]any{"metadata": map[string]any{"ownerReferences": []any{ref}, "uid": p.UID}})
	if err != nil {
		return nil, err
	}
	return c.Client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.StrategicMergePatchType, b, metav1.PatchOptions{})
}
