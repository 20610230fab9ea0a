package resourcequota

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// legacyCounts are the object counts quota knows by their short names.
var legacyCounts = map[string]corev1.ResourceName{
	"pods":                   corev1.ResourcePods,
	"services":               corev1.ResourceServices,
	"configmaps":             corev1.ResourceConfigMaps,
	"secrets":                corev1.ResourceSecrets,
	"persistentvolumeclaims": corev1.ResourcePersistentVolumeClaims,
	"replicationcontrollers": corev1.ResourceReplicationControllers,
	"resourcequotas":         corev1.ResourceQuotas,
}

// countName is the object count name of a resource: count/<plural> for
// the core group, count/<plural>.<group> otherwise.
func countName(group, plural string) corev1.ResourceName {
	if group == "" {
		return corev1.ResourceName("count/" + plural)
	}
	return corev1.ResourceName("count/" + plural + "." + group)
}

// one is the quantity 1.
func one() resource.Quantity { return *resource.NewQuantity(1, resource.DecimalSI) }

// usage is what one object of group/plural consumes. obj is a typed
// object for the kinds with resource usage, or nil for plain counts.
func usage(group, plural string, obj any) corev1.ResourceList {
	out := corev1.ResourceList{countName(group, plural): one()}
	if group == "" {
		if n, ok := legacyCounts[plural]; ok {
			out[n] = one()
		}
	}
	switch o := obj.(type) {
	case *corev1.Pod:
		if !podCounts(o) {
			return corev1.ResourceList{}
		}
		req, lim := podResources(o)
		for k, v := range req {
			out[corev1.ResourceName("requests."+string(k))] = v
			if k == corev1.ResourceCPU || k == corev1.ResourceMemory || k == corev1.ResourceEphemeralStorage {
				out[k] = v.DeepCopy()
			}
		}
		for k, v := range lim {
			out[corev1.ResourceName("limits."+string(k))] = v
		}
	case *corev1.Service:
		switch o.Spec.Type {
		case corev1.ServiceTypeNodePort:
			out[corev1.ResourceServicesNodePorts] = *resource.NewQuantity(int64(len(o.Spec.Ports)), resource.DecimalSI)
		case corev1.ServiceTypeLoadBalancer:
			out[corev1.ResourceServicesLoadBalancers] = one()
			if o.Spec.AllocateLoadBalancerNodePorts == nil || *o.Spec.AllocateLoadBalancerNodePorts {
				out[corev1.ResourceServicesNodePorts] = *resource.NewQuantity(int64(len(o.Spec.Ports)), resource.DecimalSI)
			}
		}
	case *corev1.PersistentVolumeClaim:
		storage := o.Spec.Resources.Requests[corev1.ResourceStorage]
		if a, ok := o.Status.AllocatedResources[corev1.ResourceStorage]; ok && a.Cmp(storage) > 0 {
			storage = a
		}
		out[corev1.ResourceRequestsStorage] = storage.DeepCopy()
		if o.Spec.StorageClassName != nil && *o.Spec.StorageClassName != "" {
			cls := *o.Spec.StorageClassName + ".storageclass.storage.k8s.io/"
			out[corev1.ResourceName(cls+"requests.storage")] = storage.DeepCopy()
			out[corev1.ResourceName(cls+"persistentvolumeclaims")] = one()
		}
	}
	return out
}

// podCounts: terminal pods and pods past their deletion grace period no
// longer consume quota.
func podCounts(p *corev1.Pod) bool {
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return false
	}
	if p.DeletionTimestamp != nil && p.DeletionGracePeriodSeconds != nil {
		now := metav1.Now()
		if p.DeletionTimestamp.Before(&now) {
			return false
		}
	}
	return true
}

// podResources sums container requests and limits (restartable init
// containers run beside them) and takes the larger of that and any one
// init container, plus pod overhead.
func podResources(p *corev1.Pod) (corev1.ResourceList, corev1.ResourceList) {
	total := func(pick func(corev1.ResourceRequirements) corev1.ResourceList) corev1.ResourceList {
		sum := corev1.ResourceList{}
		add := func(l corev1.ResourceList) {
			for k, v := range l {
				q := sum[k]
				q.Add(v)
				sum[k] = q
			}
		}
		for _, c := range p.Spec.Containers {
			add(pick(c.Resources))
		}
		sidecars := corev1.ResourceList{}
		for _, c := range p.Spec.InitContainers {
			if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
				add(pick(c.Resources))
				for k, v := range pick(c.Resources) {
					q := sidecars[k]
					q.Add(v)
					sidecars[k] = q
				}
				continue
			}
			for k, v := range pick(c.Resources) {
				need := v.DeepCopy()
				need.Add(sidecars[k])
				if q, ok := sum[k]; !ok || need.Cmp(q) > 0 {
					sum[k] = need
				}
			}
		}
		add(p.Spec.Overhead)
		return sum
	}
	req := total(func(r corev1.ResourceRequirements) corev1.ResourceList { return r.Requests })
	lim := total(func(r corev1.ResourceRequirements) corev1.ResourceList { return r.Limits })
	return req, lim
}

// containerConstraints: quota on cpu or memory makes every container state
// that resource (upstream's backward-compatible rule).
func containerConstraints(p *corev1.Pod, required map[corev1.ResourceName]bool) error {
	missing := map[corev1.ResourceName]map[string]bool{}
	check := func(c corev1.Container) {
		have := map[corev1.ResourceName]bool{}
		for k := range c.Resources.Requests {
			have[k] = true
			have[corev1.ResourceName("requests."+string(k))] = true
		}
		for k := range c.Resources.Limits {
			have[corev1.ResourceName("limits."+string(k))] = true
		}
		for r := range required {
			if !have[r] {
				if missing[r] == nil {
					missing[r] = map[string]bool{}
				}
				missing[r][c.Name] = true
			}
		}
	}
	for _, c := range p.Spec.Containers {
		check(c)
	}
	for _, c := range p.Spec.InitContainers {
		check(c)
	}
	if len(missing) == 0 {
		return nil
	}
	var names []string
	for r := range missing {
		names = append(names, string(r))
	}
	sort.Strings(names)
	var msgs []string
	for _, r := range names {
		var cs []string
		for c := range missing[corev1.ResourceName(r)] {
			cs = append(cs, c)
		}
		sort.Strings(cs)
		msgs = append(msgs, fmt.Sprintf("%s for: %s", r, strings.Join(cs, ",")))
	}
	return fmt.Errorf("must specify %s", strings.Join(msgs, "; "))
}

var constrained = map[corev1.ResourceName]bool{
	corev1.ResourceCPU: true, corev1.ResourceMemory: true,
	corev1.ResourceRequestsCPU: true, corev1.ResourceRequestsMemory: true,
	corev1.ResourceLimitsCPU: true, corev1.ResourceLimitsMemory: true,
}

// prettyPrint renders a list as upstream: sorted name=value pairs.
func prettyPrint(l corev1.ResourceList) string {
	names := make([]string, 0, len(l))
	for k := range l {
		names = append(names, string(k))
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		q := l[corev1.ResourceName(n)]
		parts[i] = n + "=" + q.String()
	}
	return strings.Join(parts, ",")
}

func mask(l corev1.ResourceList, names map[corev1.ResourceName]bool) corev1.ResourceList {
	out := corev1.ResourceList{}
	for k, v := range l {
		if names[k] {
			out[k] = v.DeepCopy()
		}
	}
	return out
}

func keys(l corev1.ResourceList) map[corev1.ResourceName]bool {
	out := map[corev1.ResourceName]bool{}
	for k := range l {
		out[k] = true
	}
	return out
}
