// Package priority is upstream's Priority admission plugin: a pod's
// priorityClassName resolves to spec.priority and spec.preemptionPolicy
// (the global default class, or 0, when none is named), and at most one
// PriorityClass may be the global default. It also creates the built-in
// system-cluster-critical and system-node-critical classes.
package priority

import (
	"context"
	"errors"
	"fmt"

	"github.com/skiffhq/skiff/controlplane/admission/internal/objects"
	"github.com/skiffhq/skiff/controlplane/apiserver"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Built-in classes, as upstream.
const (
	SystemClusterCritical      = "system-cluster-critical"
	SystemNodeCritical         = "system-node-critical"
	SystemCriticalPriority     = int32(2000000000)
	defaultPriorityWhenNoClass = int32(0)
)

// Plugin is the Priority admission plugin.
type Plugin struct{ r *objects.Reader }

var _ apiserver.AdmissionPlugin = (*Plugin)(nil)

// New returns the plugin.
func New(r *objects.Reader) *Plugin { return &Plugin{r: r} }

// Name implements apiserver.AdmissionPlugin.
func (p *Plugin) Name() string { return "Priority" }

// Admit implements apiserver.AdmissionPlugin.
func (p *Plugin) Admit(ctx context.Context, a *apiserver.Attributes) error {
	if a.Resource == nil || a.Resource.Group != "" || a.Resource.Plural != "pods" || a.Subresource != "" {
		return nil
	}
	pod, ok := a.Object.(*corev1.Pod)
	if !ok {
		return nil
	}
	switch a.Operation {
	case apiserver.OpCreate:
	case apiserver.OpUpdate:
		// Priority cannot change on update; pod validation keeps the old
		// value. Carry it over when a client dropped it.
		if old, ok := a.OldObject.(*corev1.Pod); ok && pod.Spec.Priority == nil && old.Spec.PriorityClassName == pod.Spec.PriorityClassName {
			pod.Spec.Priority = old.Spec.Priority
		}
		return nil
	default:
		return nil
	}
	var (
		priority int32
		policy   *corev1.PreemptionPolicy
	)
	if pod.Spec.PriorityClassName == "" {
		name, value, pp, err := p.defaultClass()
		if err != nil {
			return fmt.Errorf("failed to get default priority class: %w", err)
		}
		pod.Spec.PriorityClassName = name
		priority, policy = value, pp
	} else {
		pc, err := objects.Get[schedulingv1.PriorityClass](p.r, "scheduling.k8s.io", "priorityclasses", "", pod.Spec.PriorityClassName)
		if errors.Is(err, objects.ErrNotFound) {
			return forbidden(a, fmt.Errorf("no PriorityClass with name %v was found", pod.Spec.PriorityClassName))
		}
		if err != nil {
			return fmt.Errorf("failed to get PriorityClass with name %s: %w", pod.Spec.PriorityClassName, err)
		}
		priority, policy = pc.Value, pc.PreemptionPolicy
	}
	if pod.Spec.Priority != nil && *pod.Spec.Priority != priority {
		return forbidden(a, fmt.Errorf("the integer value of priority (%d) must not be provided in pod spec; priority admission controller computed %d from the given PriorityClass name", *pod.Spec.Priority, priority))
	}
	pod.Spec.Priority = &priority
	if policy != nil {
		if pod.Spec.PreemptionPolicy != nil && *pod.Spec.PreemptionPolicy != *policy {
			return forbidden(a, fmt.Errorf("the string value of PreemptionPolicy (%s) must not be provided in pod spec; priority admission controller computed %s from the given PriorityClass name", *pod.Spec.PreemptionPolicy, *policy))
		}
		pp := *policy
		pod.Spec.PreemptionPolicy = &pp
	}
	return nil
}

// defaultClass returns the global default class (the lowest value when
// several claim it), or no name and priority 0.
func (p *Plugin) defaultClass() (string, int32, *corev1.PreemptionPolicy, error) {
	pcs, err := objects.List[schedulingv1.PriorityClass](p.r, "scheduling.k8s.io", "priorityclasses", "")
	if err != nil {
		return "", 0, nil, err
	}
	var best *schedulingv1.PriorityClass
	for _, pc := range pcs {
		if pc.GlobalDefault && (best == nil || pc.Value < best.Value) {
			best = pc
		}
	}
	if best == nil {
		pp := corev1.PreemptLowerPriority
		return "", defaultPriorityWhenNoClass, &pp, nil
	}
	return best.Name, best.Value, best.PreemptionPolicy, nil
}

// Validate implements apiserver.AdmissionPlugin: only one PriorityClass may
// be the global default.
func (p *Plugin) Validate(ctx context.Context, a *apiserver.Attributes) error {
	if a.Resource == nil || a.Resource.Group != "scheduling.k8s.io" || a.Resource.Plural != "priorityclasses" {
		return nil
	}
	if a.Operation != apiserver.OpCreate && a.Operation != apiserver.OpUpdate {
		return nil
	}
	pc, ok := a.Object.(*schedulingv1.PriorityClass)
	if !ok || !pc.GlobalDefault {
		return nil
	}
	pcs, err := objects.List[schedulingv1.PriorityClass](p.r, "scheduling.k8s.io", "priorityclasses", "")
	if err != nil {
		return err
	}
	for _, other := range pcs {
		if other.GlobalDefault && other.Name != pc.Name {
			return forbidden(a, fmt.Errorf("PriorityClass %v is already marked as default. Only one default can exist", other.Name))
		}
	}
	return nil
}

func forbidden(a *apiserver.Attributes, err error) error {
	return apierrors.NewForbidden(a.Resource.GVR().GroupResource(), a.Name, err)
}

// Ensurer creates an object through the API unless it already exists
// (apiserver.Server.Ensure).
type Ensurer func(ctx context.Context, group, version, resource string, obj runtime.Object) error

// SystemClasses are the classes upstream creates at start.
func SystemClasses() []*schedulingv1.PriorityClass {
	return []*schedulingv1.PriorityClass{
		{
			ObjectMeta:  metav1.ObjectMeta{Name: SystemNodeCritical},
			Value:       SystemCriticalPriority + 1000,
			Description: "Used for system critical pods that must not be moved from their current node.",
		},
		{
			ObjectMeta:  metav1.ObjectMeta{Name: SystemClusterCritical},
			Value:       SystemCriticalPriority,
			Description: "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
		},
	}
}

// EnsureSystemClasses creates the built-in classes that are missing.
func EnsureSystemClasses(ctx context.Context, ensure Ensurer) error {
	for _, pc := range SystemClasses() {
		pc.TypeMeta = metav1.TypeMeta{APIVersion: "scheduling.k8s.io/v1", Kind: "PriorityClass"}
		if err := ensure(ctx, "scheduling.k8s.io", "v1", "priorityclasses", pc); err != nil {
			return fmt.Errorf("create priority class %s: %w", pc.Name, err)
		}
	}
	return nil
}
