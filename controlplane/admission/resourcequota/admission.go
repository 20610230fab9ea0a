// Package resourcequota is upstream's ResourceQuota admission plugin and
// the loop that keeps quota usage right. Admission charges each write's
// usage (pods, compute requests and limits, services, node ports, load
// balancers, claims, storage, object counts) against every quota of the
// namespace that limits it, rejecting with upstream's "exceeded quota"
// message, and records the new usage in status.used with a
// compare-and-swap write in the same request, so concurrent writes can
// never overrun a quota. The Controller recounts usage when objects go
// away and periodically, correcting drift.
package resourcequota

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/skiffhq/skiff/controlplane/admission/internal/objects"
	"github.com/skiffhq/skiff/controlplane/apiserver"
	"github.com/skiffhq/skiff/controlplane/storage"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
)

// Plugin is the ResourceQuota admission plugin.
type Plugin struct{ r *objects.Reader }

var _ apiserver.AdmissionPlugin = (*Plugin)(nil)

// New returns the plugin.
func New(r *objects.Reader) *Plugin { return &Plugin{r: r} }

// Name implements apiserver.AdmissionPlugin.
func (p *Plugin) Name() string { return "ResourceQuota" }

// Admit implements apiserver.AdmissionPlugin.
func (p *Plugin) Admit(context.Context, *apiserver.Attributes) error { return nil }

// Validate implements apiserver.AdmissionPlugin.
func (p *Plugin) Validate(ctx context.Context, a *apiserver.Attributes) error {
	if a.Resource == nil || !a.Resource.Namespaced || a.Namespace == "" || a.Subresource != "" && a.Subresource != "status" {
		return nil
	}
	if a.Operation != apiserver.OpCreate && a.Operation != apiserver.OpUpdate {
		return nil
	}
	group, plural := a.Resource.Group, a.Resource.Plural
	if a.Operation == apiserver.OpUpdate && !(group == "" && (plural == "services" || plural == "persistentvolumeclaims")) {
		// Only these kinds change usage on update.
		return nil
	}
	quotas, err := objects.List[corev1.ResourceQuota](p.r, "", "resourcequotas", a.Namespace)
	if err != nil || len(quotas) == 0 {
		return err
	}
	delta := usage(group, plural, a.Object)
	if a.Operation == apiserver.OpUpdate && a.OldObject != nil {
		prev := usage(group, plural, a.OldObject)
		for k, v := range delta {
			v.Sub(prev[k])
			if v.Sign() <= 0 {
				delete(delta, k)
			} else {
				delta[k] = v
			}
		}
		for k := range delta {
			if strings.HasPrefix(string(k), "count/") || legacyName(k) {
				delete(delta, k)
			}
		}
	}
	for k, v := range delta {
		if v.IsZero() {
			delete(delta, k)
		}
	}
	pod, _ := a.Object.(*corev1.Pod)
	var relevant []string
	for _, q := range quotas {
		if !scopesMatch(q, a.Object) {
			continue
		}
		limited := map[corev1.ResourceName]bool{}
		for k := range q.Spec.Hard {
			if _, ok := delta[k]; ok {
				limited[k] = true
			}
			if pod != nil && constrained[k] {
				limited[k] = true
			}
		}
		if len(limited) == 0 {
			continue
		}
		if pod != nil {
			req := map[corev1.ResourceName]bool{}
			for k := range limited {
				if constrained[k] {
					req[k] = true
				}
			}
			if err := containerConstraints(pod, req); err != nil {
				return forbidden(a, fmt.Errorf("failed quota: %s: %w", q.Name, err))
			}
		}
		for k := range limited {
			if _, ok := q.Status.Hard[k]; !ok {
				return forbidden(a, fmt.Errorf("status unknown for quota: %s, resources: %s", q.Name, names(limited)))
			}
		}
		relevant = append(relevant, q.Name)
	}
	if len(relevant) == 0 || len(delta) == 0 {
		return nil
	}
	for _, name := range relevant {
		if err := p.charge(ctx, a, name, delta); err != nil {
			return err
		}
	}
	return nil
}

// charge checks one quota against its current stored state and, unless
// this is a dry run, records the new usage with compare-and-swap, retrying
// on concurrent writes.
func (p *Plugin) charge(ctx context.Context, a *apiserver.Attributes, name string, delta corev1.ResourceList) error {
	key := p.r.Key("", "resourcequotas", a.Namespace, name)
	for attempt := 0; attempt < 32; attempt++ {
		q, rev, err := objects.GetFresh[corev1.ResourceQuota](ctx, p.r, "", "resourcequotas", a.Namespace, name)
		if errors.Is(err, objects.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read quota %s: %w", name, err)
		}
		requested := mask(delta, keys(q.Status.Hard))
		if len(requested) == 0 {
			return nil
		}
		used := q.Status.Used.DeepCopy()
		if used == nil {
			used = corev1.ResourceList{}
		}
		exceeded := map[corev1.ResourceName]bool{}
		for k, v := range requested {
			n := used[k].DeepCopy()
			n.Add(v)
			if n.Cmp(q.Status.Hard[k]) > 0 {
				exceeded[k] = true
			}
			used[k] = n
		}
		if len(exceeded) > 0 {
			return forbidden(a, fmt.Errorf("exceeded quota: %s, requested: %s, used: %s, limited: %s",
				q.Name, prettyPrint(mask(requested, exceeded)), prettyPrint(mask(q.Status.Used, exceeded)), prettyPrint(mask(q.Status.Hard, exceeded))))
		}
		if a.DryRun {
			return nil
		}
		q.Status.Used = used
		err = p.r.CompareAndSwap(ctx, key, q, rev)
		if errors.Is(err, storage.ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("update quota %s status: %w", name, err)
		}
		return nil
	}
	return apierrors.NewConflict(a.Resource.GVR().GroupResource(), a.Name, errors.New("too many concurrent updates to resource quotas; please retry"))
}

func legacyName(k corev1.ResourceName) bool {
	for _, n := range legacyCounts {
		if n == k {
			return true
		}
	}
	return false
}

func names(set map[corev1.ResourceName]bool) string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, string(k))
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func forbidden(a *apiserver.Attributes, err error) error {
	return apierrors.NewForbidden(a.Resource.GVR().GroupResource(), a.Name, err)
}

// scopesMatch applies the quota's scopes (Terminating, NotTerminating,
// BestEffort, NotBestEffort, and PriorityClass through scopeSelector):
// a scoped quota tracks only the pods in scope.
func scopesMatch(q *corev1.ResourceQuota, obj runtime.Object) bool {
	scopes := append([]corev1.ResourceQuotaScope(nil), q.Spec.Scopes...)
	var sel []corev1.ScopedResourceSelectorRequirement
	if q.Spec.ScopeSelector != nil {
		sel = q.Spec.ScopeSelector.MatchExpressions
	}
	if len(scopes) == 0 && len(sel) == 0 {
		return true
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		if _, err := meta.Accessor(obj); err == nil {
			return false
		}
		return false
	}
	for _, s := range scopes {
		if !podInScope(pod, s) {
			return false
		}
	}
	for _, req := range sel {
		if req.ScopeName == corev1.ResourceQuotaScopePriorityClass {
			in := false
			for _, v := range req.Values {
				if v == pod.Spec.PriorityClassName {
					in = true
				}
			}
			switch req.Operator {
			case corev1.ScopeSelectorOpIn:
				if !in {
					return false
				}
			case corev1.ScopeSelectorOpNotIn:
				if in {
					return false
				}
			case corev1.ScopeSelectorOpExists:
				if pod.Spec.PriorityClassName == "" {
					return false
				}
			case corev1.ScopeSelectorOpDoesNotExist:
				if pod.Spec.PriorityClassName != "" {
					return false
				}
			}
			continue
		}
		if !podInScope(pod, req.ScopeName) {
			return false
		}
	}
	return true
}

func podInScope(p *corev1.Pod, s corev1.ResourceQuotaScope) bool {
	switch s {
	case corev1.ResourceQuotaScopeTerminating:
		return p.Spec.ActiveDeadlineSeconds != nil
	case corev1.ResourceQuotaScopeNotTerminating:
		return p.Spec.ActiveDeadlineSeconds == nil
	case corev1.ResourceQuotaScopeBestEffort:
		return bestEffort(p)
	case corev1.ResourceQuotaScopeNotBestEffort:
		return !bestEffort(p)
	}
	return true
}

func bestEffort(p *corev1.Pod) bool {
	for _, cs := range [][]corev1.Container{p.Spec.Containers, p.Spec.InitContainers} {
		for _, c := range cs {
			if len(c.Resources.Requests) > 0 || len(c.Resources.Limits) > 0 {
				return false
			}
		}
	}
	return true
}
