package kinds

import (
	"context"
	"crypto/sha256"
	"encoding/base64"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// storageVersionHash is upstream's discovery hash of the storage version.
func storageVersionHash(group, version, kind string) string {
	gv := version
	if group != "" {
		gv = group + "/" + version
	}
	sum := sha256.Sum256([]byte(gv + "/" + kind))
	return base64.StdEncoding.EncodeToString(sum[:8])
}

// hookSet lets each kind's file contribute hooks by GroupKind.
var hookSet = map[string]func(r *registry.Resource){}

// Per-kind semantics, keyed by gk(group, kind). Files of this package fill
// these maps in init functions: defaults_*.go (upstream's SetDefaults_*),
// validation_*.go (upstream's validation), printers_*.go (upstream's
// server-side table columns).
var (
	defaulters       = map[string]func(obj runtime.Object){}
	validators       = map[string]func(ctx context.Context, obj runtime.Object) field.ErrorList{}
	updateValidators = map[string]func(ctx context.Context, obj, old runtime.Object) field.ErrorList{}
	statusValidators = map[string]func(ctx context.Context, obj, old runtime.Object) field.ErrorList{}
	printers         = map[string]*registry.TableConvertor{}
)

func gk(group, kind string) string { return group + "/" + kind }

// applyHooks installs the hooks defined for r's kind, plus the generic
// rule that status is cleared on create for kinds with a status
// subresource (the controllers own it).
func applyHooks(r *registry.Resource) {
	if r.HasSubresource("status") {
		r.Hooks.PrepareForCreate = clearStatusOnCreate
	}
	k := gk(r.Group, r.Kind)
	if fn, ok := hookSet[k]; ok {
		fn(r)
	}
	if fn, ok := defaulters[k]; ok {
		r.Hooks.Default = fn
	}
	if fn, ok := validators[k]; ok {
		r.Hooks.Validate = fn
	}
	if fn, ok := updateValidators[k]; ok {
		r.Hooks.ValidateUpdate = fn
	}
	if fn, ok := statusValidators[k]; ok {
		r.Hooks.ValidateStatusUpdate = fn
	}
	if p, ok := printers[k]; ok {
		r.Hooks.Table = p
	}
}

func clearStatusOnCreate(_ context.Context, obj runtime.Object) {
	clearStatus(obj)
}

func init() {
	hookSet[gk("", "Namespace")] = func(r *registry.Resource) {
		r.Hooks.PrepareForCreate = func(_ context.Context, obj runtime.Object) {
			ns := obj.(*corev1.Namespace)
			ns.Status = corev1.NamespaceStatus{Phase: corev1.NamespaceActive}
			ns.Spec.Finalizers = []corev1.FinalizerName{corev1.FinalizerKubernetes}
			if ns.Labels == nil {
				ns.Labels = map[string]string{}
			}
			ns.Labels["kubernetes.io/metadata.name"] = ns.Name
		}
		prevUpdate := r.Hooks.PrepareForUpdate
		r.Hooks.PrepareForUpdate = func(ctx context.Context, obj, old runtime.Object) {
			ns, o := obj.(*corev1.Namespace), old.(*corev1.Namespace)
			ns.Spec.Finalizers = o.Spec.Finalizers
			if ns.Labels == nil {
				ns.Labels = map[string]string{}
			}
			ns.Labels["kubernetes.io/metadata.name"] = ns.Name
			if prevUpdate != nil {
				prevUpdate(ctx, obj, old)
			}
		}
		r.Hooks.PrepareForDelete = func(_ context.Context, obj runtime.Object) {
			obj.(*corev1.Namespace).Status.Phase = corev1.NamespaceTerminating
		}
		r.Hooks.PendingFinalization = func(obj runtime.Object) bool {
			return len(obj.(*corev1.Namespace).Spec.Finalizers) > 0
		}
	}
	hookSet[gk("", "Pod")] = func(r *registry.Resource) {
		r.Hooks.PrepareForCreate = func(_ context.Context, obj runtime.Object) {
			pod := obj.(*corev1.Pod)
			pod.Status = corev1.PodStatus{Phase: corev1.PodPending, QOSClass: qosClass(pod)}
		}
		r.Hooks.GracePeriod = func(obj runtime.Object, requested *int64) int64 {
			pod := obj.(*corev1.Pod)
			if pod.Spec.NodeName == "" || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
				return 0
			}
			if requested != nil {
				return *requested
			}
			if pod.Spec.TerminationGracePeriodSeconds != nil {
				return *pod.Spec.TerminationGracePeriodSeconds
			}
			return corev1.DefaultTerminationGracePeriodSeconds
		}
	}
	hookSet[gk("", "Node")] = func(r *registry.Resource) {
		// Node agents register their Node with its status.
		r.Hooks.PrepareForCreate = nil
	}
	hookSet[gk("", "PersistentVolume")] = func(r *registry.Resource) {
		r.Hooks.PrepareForCreate = func(_ context.Context, obj runtime.Object) {
			pv := obj.(*corev1.PersistentVolume)
			pv.Status = corev1.PersistentVolumeStatus{Phase: corev1.VolumePending}
		}
	}
	hookSet[gk("", "PersistentVolumeClaim")] = func(r *registry.Resource) {
		r.Hooks.PrepareForCreate = func(_ context.Context, obj runtime.Object) {
			pvc := obj.(*corev1.PersistentVolumeClaim)
			pvc.Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending}
		}
	}
	hookSet[gk("", "ReplicationController")] = func(r *registry.Resource) {
		r.Hooks.Scale = &registry.ScaleAccess{
			Get: func(obj runtime.Object) (int32, int32, string) {
				rc := obj.(*corev1.ReplicationController)
				return deref(rc.Spec.Replicas, 1), rc.Status.Replicas, metav1.FormatLabelSelector(&metav1.LabelSelector{MatchLabels: rc.Spec.Selector})
			},
			Set: func(obj runtime.Object, n int32) { obj.(*corev1.ReplicationController).Spec.Replicas = &n },
		}
	}
	hookSet[gk("apps", "Deployment")] = func(r *registry.Resource) {
		r.Hooks.Scale = &registry.ScaleAccess{
			Get: func(obj runtime.Object) (int32, int32, string) {
				d := obj.(*appsv1.Deployment)
				return deref(d.Spec.Replicas, 1), d.Status.Replicas, selectorString(d.Spec.Selector)
			},
			Set: func(obj runtime.Object, n int32) { obj.(*appsv1.Deployment).Spec.Replicas = &n },
		}
	}
	hookSet[gk("apps", "ReplicaSet")] = func(r *registry.Resource) {
		r.Hooks.Scale = &registry.ScaleAccess{
			Get: func(obj runtime.Object) (int32, int32, string) {
				d := obj.(*appsv1.ReplicaSet)
				return deref(d.Spec.Replicas, 1), d.Status.Replicas, selectorString(d.Spec.Selector)
			},
			Set: func(obj runtime.Object, n int32) { obj.(*appsv1.ReplicaSet).Spec.Replicas = &n },
		}
	}
	hookSet[gk("apps", "StatefulSet")] = func(r *registry.Resource) {
		r.Hooks.Scale = &registry.ScaleAccess{
			Get: func(obj runtime.Object) (int32, int32, string) {
				d := obj.(*appsv1.StatefulSet)
				return deref(d.Spec.Replicas, 1), d.Status.Replicas, selectorString(d.Spec.Selector)
			},
			Set: func(obj runtime.Object, n int32) { obj.(*appsv1.StatefulSet).Spec.Replicas = &n },
		}
	}
}

func deref(p *int32, def int32) int32 {
	if p == nil {
		return def
	}
	return *p
}

func selectorString(s *metav1.LabelSelector) string {
	if s == nil {
		return ""
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return ""
	}
	return sel.String()
}

// clearStatus zeroes obj.Status by reflection-free type switch fallback.
func clearStatus(obj runtime.Object) {
	if c, ok := obj.(interface{ ClearStatus() }); ok {
		c.ClearStatus()
		return
	}
	clearStatusReflect(obj)
}

// qosClass computes the pod's QoS class as upstream does.
func qosClass(pod *corev1.Pod) corev1.PodQOSClass {
	requests := corev1.ResourceList{}
	limits := corev1.ResourceList{}
	zero := true
	guaranteed := true
	containers := append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	for _, c := range containers {
		for name, q := range c.Resources.Requests {
			if name != corev1.ResourceCPU && name != corev1.ResourceMemory {
				continue
			}
			if !q.IsZero() {
				zero = false
				if cur, ok := requests[name]; ok {
					cur.Add(q)
					requests[name] = cur
				} else {
					requests[name] = q.DeepCopy()
				}
			}
		}
		got := 0
		for name, q := range c.Resources.Limits {
			if name != corev1.ResourceCPU && name != corev1.ResourceMemory {
				continue
			}
			if !q.IsZero() {
				zero = false
				got++
				if cur, ok := limits[name]; ok {
					cur.Add(q)
					limits[name] = cur
				} else {
					limits[name] = q.DeepCopy()
				}
			}
		}
		if got != 2 {
			guaranteed = false
		}
	}
	if zero {
		return corev1.PodQOSBestEffort
	}
	if guaranteed {
		for name, req := range requests {
			if lim, ok := limits[name]; !ok || lim.Cmp(req) != 0 {
				guaranteed = false
			}
		}
	}
	if guaranteed && len(limits) == 2 {
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}
