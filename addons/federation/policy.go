package federation

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/skiffhq/skiff/addons/federation/apis/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
)

// Match strengths of a resource selector, strongest last: the policy with
// the strongest matching selector wins an object.
const (
	matchNone = iota
	matchKind
	matchLabels
	matchName
)

// policy is a PropagationPolicy or ClusterPropagationPolicy.
type policy struct {
	Kind      string // v1alpha1.KindPropagation or KindClusterPropagat
	Namespace string
	Name      string
	Spec      v1alpha1.PropagationSpec
}

func (p *policy) ref() v1alpha1.PolicyReference {
	return v1alpha1.PolicyReference{Kind: p.Kind, Namespace: p.Namespace, Name: p.Name}
}

// matchStrength is how specifically p selects obj (matchNone = not at all).
func (p *policy) matchStrength(obj *unstructured.Unstructured) int {
	if p.Kind == v1alpha1.KindPropagation && obj.GetNamespace() != p.Namespace {
		return matchNone
	}
	best := matchNone
	for _, s := range p.Spec.ResourceSelectors {
		if s.APIVersion != obj.GetAPIVersion() || s.Kind != obj.GetKind() {
			continue
		}
		if s.Namespace != "" && s.Namespace != obj.GetNamespace() {
			continue
		}
		m := matchKind
		if s.Name != "" {
			if s.Name != obj.GetName() {
				continue
			}
			m = matchName
		}
		if s.LabelSelector != nil {
			sel, err := metav1.LabelSelectorAsSelector(s.LabelSelector)
			if err != nil || !sel.Matches(labels.Set(obj.GetLabels())) {
				continue
			}
			if m < matchLabels {
				m = matchLabels
			}
		}
		best = max(best, m)
	}
	return best
}

// choosePolicy returns the policy that places obj: the strongest match
// (name > label selector > kind only); on a tie a PropagationPolicy beats a
// ClusterPropagationPolicy, then the alphabetically first name wins.
func choosePolicy(obj *unstructured.Unstructured, policies []*policy) *policy {
	var (
		won      *policy
		strength int
	)
	for _, p := range policies {
		m := p.matchStrength(obj)
		if m == matchNone {
			continue
		}
		if won == nil || m > strength || (m == strength && policyLess(p, won)) {
			won, strength = p, m
		}
	}
	return won
}

func policyLess(a, b *policy) bool {
	if a.Kind != b.Kind {
		return a.Kind == v1alpha1.KindPropagation
	}
	return a.Name < b.Name
}

// memberInfo is what scheduling knows about a member.
type memberInfo struct {
	Name   string
	Labels map[string]string
	Taints []corev1.Taint
	// Ready is false while the member is failing its health checks (or
	// waiting out the recovery grace).
	Ready bool
	// EverReady is false for a member that never passed a health check
	// (it cannot hold anything federation made).
	EverReady bool
	// Available is allocatable minus allocated (dynamic weights).
	Available corev1.ResourceList
}

func tolerates(tols []corev1.Toleration, t corev1.Taint) bool {
	for _, tol := range tols {
		if tol.Effect != "" && tol.Effect != t.Effect {
			continue
		}
		switch tol.Operator {
		case corev1.TolerationOpExists:
			if tol.Key == "" || tol.Key == t.Key {
				return true
			}
		case corev1.TolerationOpEqual, "":
			if tol.Key == t.Key && tol.Value == t.Value {
				return true
			}
		}
	}
	return false
}

// placementClusters returns the members a placement wants, sorted by name.
// The not-ready taint is ignored here: health decides which wanted members
// are active, and a member that is merely unhealthy keeps what it has.
func placementClusters(pl v1alpha1.Placement, members []memberInfo) ([]string, error) {
	var sel labels.Selector
	if pl.ClusterSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(pl.ClusterSelector)
		if err != nil {
			return nil, fmt.Errorf("placement.clusterSelector: %w", err)
		}
		sel = s
	}
	var out []string
	for _, m := range members {
		if len(pl.ClusterNames) > 0 && !slices.Contains(pl.ClusterNames, m.Name) {
			continue
		}
		if sel != nil && !sel.Matches(labels.Set(m.Labels)) {
			continue
		}
		ok := true
		for _, t := range m.Taints {
			if t.Key == v1alpha1.NotReadyTaintKey || t.Effect == corev1.TaintEffectPreferNoSchedule {
				continue
			}
			if !tolerates(pl.Tolerations, t) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, m.Name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// divide splits total over clusters in proportion to weights (largest
// remainder method). Leftover replicas go to the largest remainders, ties
// to the alphabetically first cluster, so the result is deterministic. With
// all weights zero the split is equal.
func divide(total int32, clusters []string, weights map[string]int64) map[string]int32 {
	out := make(map[string]int32, len(clusters))
	if len(clusters) == 0 || total <= 0 {
		for _, c := range clusters {
			out[c] = 0
		}
		return out
	}
	var sum int64
	for _, c := range clusters {
		sum += max(weights[c], 0)
	}
	w := func(c string) int64 {
		if sum == 0 {
			return 1
		}
		return max(weights[c], 0)
	}
	if sum == 0 {
		sum = int64(len(clusters))
	}
	type rem struct {
		name string
		r    int64
	}
	var rems []rem
	assigned := int32(0)
	for _, c := range clusters {
		n := int64(total) * w(c)
		out[c] = int32(n / sum)
		assigned += out[c]
		rems = append(rems, rem{c, n % sum})
	}
	slices.SortFunc(rems, func(a, b rem) int {
		if a.r != b.r {
			return cmp.Compare(b.r, a.r)
		}
		return cmp.Compare(a.name, b.name)
	})
	for i := 0; assigned < total; i++ {
		out[rems[i%len(rems)].name]++
		assigned++
	}
	return out
}

// fitReplicas is how many pods with requests fit in avail (the weight of
// dynamic "AvailableReplicas" division).
func fitReplicas(avail corev1.ResourceList, requests corev1.ResourceList) int64 {
	n := int64(-1)
	if q, ok := avail[corev1.ResourcePods]; ok {
		n = q.Value()
	}
	for name, req := range requests {
		if req.IsZero() {
			continue
		}
		a, ok := avail[name]
		if !ok {
			continue
		}
		k := a.MilliValue() / req.MilliValue()
		if n < 0 || k < n {
			n = k
		}
	}
	return max(n, 0)
}

// podRequests sums the container requests of a pod template.
func podRequests(spec map[string]any) corev1.ResourceList {
	out := corev1.ResourceList{}
	cs, _, _ := unstructured.NestedSlice(spec, "containers")
	for _, c := range cs {
		cm, _ := c.(map[string]any)
		reqs, _, _ := unstructured.NestedStringMap(cm, "resources", "requests")
		for k, v := range reqs {
			q, err := resource.ParseQuantity(v)
			if err != nil {
				continue
			}
			sum := out[corev1.ResourceName(k)]
			sum.Add(q)
			out[corev1.ResourceName(k)] = sum
		}
	}
	return out
}
