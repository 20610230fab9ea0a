package daemonset

import (
	"sort"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/internal/history"
	"github.com/skiffhq/skiff/controlplane/controllers/internal/podutil"
	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// GVK is the kind this controller owns pods for.
var GVK = appsv1.SchemeGroupVersion.WithKind("DaemonSet")

// TemplateGenerationLabel is the deprecated pod-template-generation label,
// set when the DaemonSet carries the deprecated template generation
// annotation.
const (
	TemplateGenerationLabel      = "pod-template-generation"
	TemplateGenerationAnnotation = "deprecated.daemonset.template.generation"
)

// DefaultTolerations are the tolerations every daemon pod gets, as
// upstream: it keeps running on not-ready and unreachable nodes and is
// placed on nodes under pressure or cordoned.
func DefaultTolerations(hostNetwork bool) []corev1.Toleration {
	out := []corev1.Toleration{
		{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
		{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
		{Key: corev1.TaintNodeDiskPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
		{Key: corev1.TaintNodeMemoryPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
		{Key: corev1.TaintNodePIDPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
		{Key: corev1.TaintNodeUnschedulable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	}
	if hostNetwork {
		out = append(out, corev1.Toleration{Key: corev1.TaintNodeNetworkUnavailable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule})
	}
	return out
}

// addTolerations adds each of add that the list does not already have (same
// key, operator, value and effect).
func addTolerations(list []corev1.Toleration, add []corev1.Toleration) []corev1.Toleration {
	for _, t := range add {
		found := false
		for i := range list {
			if list[i].Key == t.Key && list[i].Effect == t.Effect {
				list[i] = t // upstream's AddOrUpdateTolerationInPod replaces the same key and effect
				found = true
				break
			}
		}
		if !found {
			list = append(list, t)
		}
	}
	return list
}

// NewPod is ds's pod for node (unsaved): the template with the default
// tolerations, bound to the node by required node affinity on
// metadata.name so the scheduler places it, and the revision labels.
func NewPod(ds *appsv1.DaemonSet, nodeName, hash string) *corev1.Pod {
	t := &ds.Spec.Template
	prefix := ds.Name + "-"
	if len(prefix) > 58 {
		prefix = prefix[:58]
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName:    prefix,
			Namespace:       ds.Namespace,
			Labels:          copyMap(t.Labels),
			Annotations:     copyMap(t.Annotations),
			Finalizers:      append([]string(nil), t.Finalizers...),
			OwnerReferences: []metav1.OwnerReference{*podutil.NewControllerRef(ds, GVK)},
		},
		Spec: *t.Spec.DeepCopy(),
	}
	if p.Labels == nil {
		p.Labels = map[string]string{}
	}
	if hash != "" {
		p.Labels[history.HashLabel] = hash
	}
	if g := ds.Annotations[TemplateGenerationAnnotation]; g != "" {
		p.Labels[TemplateGenerationLabel] = g
	}
	p.Spec.Tolerations = addTolerations(p.Spec.Tolerations, DefaultTolerations(p.Spec.HostNetwork))
	if nodeName != "" {
		p.Spec.Affinity = nodeNameAffinity(p.Spec.Affinity, nodeName)
	}
	return p
}

// nodeNameAffinity replaces the required node selector terms with one term
// matching metadata.name = node (the controller already checked the
// original terms), keeping preferred terms and pod (anti-)affinity.
func nodeNameAffinity(a *corev1.Affinity, node string) *corev1.Affinity {
	term := corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{{
		Key: metav1.ObjectNameField, Operator: corev1.NodeSelectorOpIn, Values: []string{node},
	}}}
	if a == nil {
		a = &corev1.Affinity{}
	}
	if a.NodeAffinity == nil {
		a.NodeAffinity = &corev1.NodeAffinity{}
	}
	a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{term}}
	return a
}

// TargetNode is the node a daemon pod is on or meant for: spec.nodeName, or
// the single metadata.name of its required node affinity.
func TargetNode(p *corev1.Pod) string {
	if p.Spec.NodeName != "" {
		return p.Spec.NodeName
	}
	a := p.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return ""
	}
	terms := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) != 1 {
		return ""
	}
	for _, f := range terms[0].MatchFields {
		if f.Key == metav1.ObjectNameField && f.Operator == corev1.NodeSelectorOpIn && len(f.Values) == 1 {
			return f.Values[0]
		}
	}
	return ""
}

// ShouldRun reports whether ds wants a pod on node (shouldRun) and whether
// a pod already there may stay (shouldContinue): node name, node selector
// and required node affinity must match; an untolerated NoSchedule taint
// stops new pods, an untolerated NoExecute taint also evicts running ones.
func ShouldRun(ds *appsv1.DaemonSet, node *corev1.Node) (shouldRun, shouldContinue bool) {
	if n := ds.Spec.Template.Spec.NodeName; n != "" && n != node.Name {
		return false, false
	}
	p := &corev1.Pod{Spec: *ds.Spec.Template.Spec.DeepCopy()}
	p.Spec.Tolerations = addTolerations(p.Spec.Tolerations, DefaultTolerations(p.Spec.HostNetwork))
	if !framework.PodMatchesNodeSelectorAndAffinity(p, node) {
		return false, false
	}
	if _, bad := framework.FindUntoleratedTaint(node.Spec.Taints, p.Spec.Tolerations, corev1.TaintEffectNoSchedule, corev1.TaintEffectNoExecute); bad {
		_, evict := framework.FindUntoleratedTaint(node.Spec.Taints, p.Spec.Tolerations, corev1.TaintEffectNoExecute)
		return false, !evict
	}
	return true, true
}

// IsUpdated reports a pod of the current template: its hash label (or the
// deprecated template generation) matches.
func IsUpdated(ds *appsv1.DaemonSet, p *corev1.Pod, hash string) bool {
	if hash != "" && p.Labels[history.HashLabel] == hash {
		return true
	}
	g := ds.Annotations[TemplateGenerationAnnotation]
	return g != "" && p.Labels[TemplateGenerationLabel] == g
}

// Plan is what one sync does: create a pod on each of CreateOn, delete
// each of Delete.
type Plan struct {
	CreateOn []string
	Delete   []*corev1.Pod
	// FailedPods are failed daemon pods among Delete (for events).
	FailedPods []*corev1.Pod
}

func byAge(ps []*corev1.Pod) {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i].CreationTimestamp, ps[j].CreationTimestamp
		if !a.Equal(&b) {
			return a.Before(&b)
		}
		return ps[i].Name < ps[j].Name
	})
}

// surge is ds's maxSurge resolved against desired (0 for OnDelete).
func surge(ds *appsv1.DaemonSet, desired int) int {
	ru := ds.Spec.UpdateStrategy.RollingUpdate
	if ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType || ru == nil || ru.MaxSurge == nil {
		return 0
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(ru.MaxSurge, desired, true)
	if err != nil {
		return 0
	}
	return n
}

// unavailable is ds's maxUnavailable resolved against desired, at least 1
// when maxSurge is 0 (upstream's rule).
func unavailable(ds *appsv1.DaemonSet, desired int) int {
	ru := ds.Spec.UpdateStrategy.RollingUpdate
	n := 1
	if ru != nil && ru.MaxUnavailable != nil {
		v, err := intstr.GetScaledValueFromIntOrPercent(ru.MaxUnavailable, desired, false)
		if err == nil {
			n = v
		}
	}
	if n == 0 && surge(ds, desired) == 0 {
		n = 1
	}
	return n
}

// Manage decides the creates and deletes that put exactly one daemon pod
// on each node that should run one and none elsewhere. podsByNode are ds's
// pods by target node (finished pods that are being deleted left out).
func Manage(ds *appsv1.DaemonSet, nodes []*corev1.Node, podsByNode map[string][]*corev1.Pod, hash string) Plan {
	var plan Plan
	allowSurge := surge(ds, len(nodes)) > 0
	for _, node := range nodes {
		pods := podsByNode[node.Name]
		run, cont := ShouldRun(ds, node)
		switch {
		case run && len(pods) == 0:
			plan.CreateOn = append(plan.CreateOn, node.Name)
		case cont:
			var running []*corev1.Pod
			for _, p := range pods {
				if p.DeletionTimestamp != nil {
					continue
				}
				if podutil.IsTerminated(p) {
					plan.Delete = append(plan.Delete, p)
					if p.Status.Phase == corev1.PodFailed {
						plan.FailedPods = append(plan.FailedPods, p)
					}
					continue
				}
				running = append(running, p)
			}
			if len(running) <= 1 {
				break
			}
			byAge(running)
			if !allowSurge {
				plan.Delete = append(plan.Delete, running[1:]...)
				break
			}
			// With surge, keep the oldest updated and the oldest old pod.
			var keptNew, keptOld bool
			for _, p := range running {
				if IsUpdated(ds, p, hash) {
					if keptNew {
						plan.Delete = append(plan.Delete, p)
					}
					keptNew = true
				} else {
					if keptOld {
						plan.Delete = append(plan.Delete, p)
					}
					keptOld = true
				}
			}
		default:
			for _, p := range pods {
				if p.DeletionTimestamp == nil {
					plan.Delete = append(plan.Delete, p)
				}
			}
		}
	}
	return plan
}

// nodePods splits a node's live pods into the updated and the old one;
// ok is false with more than one of either (Manage cleans that up first).
func nodePods(ds *appsv1.DaemonSet, pods []*corev1.Pod, hash string) (updated, old *corev1.Pod, ok bool) {
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			continue
		}
		if IsUpdated(ds, p, hash) {
			if updated != nil {
				return nil, nil, false
			}
			updated = p
		} else {
			if old != nil {
				return nil, nil, false
			}
			old = p
		}
	}
	return updated, old, true
}

// RollingUpdate decides the next step of a RollingUpdate: with maxSurge 0
// it deletes old pods while no more than maxUnavailable nodes are without
// an available pod (unavailable old pods go at once); with maxSurge it
// creates updated pods beside old ones on up to maxSurge nodes and deletes
// each old pod once its replacement is available.
func RollingUpdate(ds *appsv1.DaemonSet, nodes []*corev1.Node, podsByNode map[string][]*corev1.Pod, hash string, now time.Time) Plan {
	var plan Plan
	desired := 0
	for _, n := range nodes {
		if run, _ := ShouldRun(ds, n); run {
			desired++
		}
	}
	maxSurge, maxUnavailable := surge(ds, desired), unavailable(ds, desired)
	available := func(p *corev1.Pod) bool { return podutil.IsAvailable(p, ds.Spec.MinReadySeconds, now) }
	names := make([]string, 0, len(podsByNode))
	for n := range podsByNode {
		names = append(names, n)
	}
	sort.Strings(names)
	nodeByName := map[string]*corev1.Node{}
	for _, n := range nodes {
		nodeByName[n.Name] = n
	}

	if maxSurge == 0 {
		numUnavailable := 0
		var allowed, candidates []*corev1.Pod
		for _, name := range names {
			updated, old, ok := nodePods(ds, podsByNode[name], hash)
			if !ok {
				continue
			}
			switch {
			case old == nil && updated == nil, old != nil && updated != nil:
				numUnavailable++
			case updated != nil:
				if !available(updated) {
					numUnavailable++
				}
			default:
				switch {
				case !available(old):
					allowed = append(allowed, old)
				case numUnavailable >= maxUnavailable:
				default:
					candidates = append(candidates, old)
				}
			}
		}
		remaining := min(max(maxUnavailable-numUnavailable, 0), len(candidates))
		plan.Delete = append(allowed, candidates[:remaining]...)
		return plan
	}

	numSurge := 0
	var allowedNodes, candidateNodes []string
	for _, name := range names {
		updated, old, ok := nodePods(ds, podsByNode[name], hash)
		if !ok {
			numSurge++
			continue
		}
		switch {
		case old == nil:
		case updated == nil:
			switch {
			case !available(old):
				if n := nodeByName[name]; n != nil {
					if run, _ := ShouldRun(ds, n); run {
						allowedNodes = append(allowedNodes, name)
					}
				}
			case numSurge >= maxSurge:
			default:
				candidateNodes = append(candidateNodes, name)
			}
		default:
			if !available(updated) {
				numSurge++
				continue
			}
			plan.Delete = append(plan.Delete, old)
		}
	}
	remaining := min(max(maxSurge-numSurge, 0), len(candidateNodes))
	plan.CreateOn = append(allowedNodes, candidateNodes[:remaining]...)
	return plan
}

// ComputeStatus is ds's status from its pods by node.
func ComputeStatus(ds *appsv1.DaemonSet, nodes []*corev1.Node, podsByNode map[string][]*corev1.Pod, hash string, collisionCount int32, now time.Time) appsv1.DaemonSetStatus {
	st := appsv1.DaemonSetStatus{ObservedGeneration: ds.Generation, Conditions: ds.Status.Conditions}
	if collisionCount != 0 || ds.Status.CollisionCount != nil {
		cc := collisionCount
		st.CollisionCount = &cc
	}
	for _, node := range nodes {
		run, _ := ShouldRun(ds, node)
		var pods []*corev1.Pod
		for _, p := range podsByNode[node.Name] {
			if p.DeletionTimestamp == nil || !podutil.IsTerminated(p) {
				pods = append(pods, p)
			}
		}
		scheduled := len(pods) > 0
		if run {
			st.DesiredNumberScheduled++
			if !scheduled {
				continue
			}
			st.CurrentNumberScheduled++
			byAge(pods)
			p := pods[0]
			if podutil.IsReady(p) {
				st.NumberReady++
				if podutil.IsAvailable(p, ds.Spec.MinReadySeconds, now) {
					st.NumberAvailable++
				}
			}
			if IsUpdated(ds, p, hash) {
				st.UpdatedNumberScheduled++
			}
		} else if scheduled {
			st.NumberMisscheduled++
		}
	}
	st.NumberUnavailable = max(st.DesiredNumberScheduled-st.NumberAvailable, 0)
	return st
}

func statusEqual(a, b appsv1.DaemonSetStatus) bool {
	cc := func(p *int32) int32 {
		if p == nil {
			return -1
		}
		return *p
	}
	return a.ObservedGeneration == b.ObservedGeneration && a.DesiredNumberScheduled == b.DesiredNumberScheduled &&
		a.CurrentNumberScheduled == b.CurrentNumberScheduled && a.NumberMisscheduled == b.NumberMisscheduled &&
		a.NumberReady == b.NumberReady && a.NumberAvailable == b.NumberAvailable && a.NumberUnavailable == b.NumberUnavailable &&
		a.UpdatedNumberScheduled == b.UpdatedNumberScheduled && cc(a.CollisionCount) == cc(b.CollisionCount)
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
