// Package podtopologyspread is the PodTopologySpread plugin: required
// (DoNotSchedule) topology spread constraints filter nodes whose domain
// would exceed maxSkew (minDomains, nodeAffinityPolicy, nodeTaintsPolicy and
// matchLabelKeys honoured); soft (ScheduleAnyway) constraints score nodes
// towards an even spread. Pods without constraints get the system defaults
// (hostname maxSkew 3, zone maxSkew 5, both ScheduleAnyway) with a selector
// built from the Services, ReplicationControllers, ReplicaSets and
// StatefulSets that select them.
package podtopologyspread

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/sets"
	appsv1listers "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
)

// Name of the plugin and its rejection reasons.
const (
	Name                         = "PodTopologySpread"
	ErrReasonConstraintsNotMatch = "node(s) didn't match pod topology spread constraints"
	ErrReasonNodeLabelNotMatch   = ErrReasonConstraintsNotMatch + " (missing required label)"
)

// Defaulting types.
const (
	SystemDefaulting = "System"
	ListDefaulting   = "List"
)

const (
	preFilterKey = "PreFilter" + Name
	preScoreKey  = "PreScore" + Name
)

func init() { framework.Register(Name, New) }

// Args are PodTopologySpreadArgs.
type Args struct {
	DefaultConstraints []corev1.TopologySpreadConstraint `json:"defaultConstraints,omitempty"`
	DefaultingType     string                            `json:"defaultingType,omitempty"`
}

// SystemDefaultConstraints are upstream's system defaults.
var SystemDefaultConstraints = []corev1.TopologySpreadConstraint{
	{TopologyKey: corev1.LabelHostname, WhenUnsatisfiable: corev1.ScheduleAnyway, MaxSkew: 3},
	{TopologyKey: corev1.LabelTopologyZone, WhenUnsatisfiable: corev1.ScheduleAnyway, MaxSkew: 5},
}

// PodTopologySpread is the plugin.
type PodTopologySpread struct {
	h        framework.Handle
	defaults []corev1.TopologySpreadConstraint
	services corelisters.ServiceLister
	rcs      corelisters.ReplicationControllerLister
	rss      appsv1listers.ReplicaSetLister
	sss      appsv1listers.StatefulSetLister
}

var (
	_ framework.PreFilterPlugin   = (*PodTopologySpread)(nil)
	_ framework.FilterPlugin      = (*PodTopologySpread)(nil)
	_ framework.PreScorePlugin    = (*PodTopologySpread)(nil)
	_ framework.ScorePlugin       = (*PodTopologySpread)(nil)
	_ framework.EnqueueExtensions = (*PodTopologySpread)(nil)
)

// New builds the plugin.
func New(raw json.RawMessage, h framework.Handle) (framework.Plugin, error) {
	a := Args{DefaultingType: SystemDefaulting}
	if err := framework.DecodeArgs(raw, &a); err != nil {
		return nil, err
	}
	p := &PodTopologySpread{h: h}
	switch a.DefaultingType {
	case SystemDefaulting:
		if len(a.DefaultConstraints) > 0 {
			return nil, fmt.Errorf("defaultConstraints: Invalid value: when .defaultingType is \"System\", .defaultConstraints must be empty")
		}
		p.defaults = SystemDefaultConstraints
	case ListDefaulting, "":
		p.defaults = a.DefaultConstraints
	default:
		return nil, fmt.Errorf("defaultingType: Unsupported value: %q: supported values: \"System\", \"List\"", a.DefaultingType)
	}
	for i, c := range p.defaults {
		if c.LabelSelector != nil {
			return nil, fmt.Errorf("defaultConstraints[%d].labelSelector: Forbidden: constraint must not define a selector, as they deduced for each pod", i)
		}
		if c.MaxSkew <= 0 {
			return nil, fmt.Errorf("defaultConstraints[%d].maxSkew: Invalid value: %d: must be greater than zero", i, c.MaxSkew)
		}
	}
	if len(p.defaults) > 0 && h != nil && h.SharedInformerFactory() != nil {
		f := h.SharedInformerFactory()
		p.services = f.Core().V1().Services().Lister()
		p.rcs = f.Core().V1().ReplicationControllers().Lister()
		p.rss = f.Apps().V1().ReplicaSets().Lister()
		p.sss = f.Apps().V1().StatefulSets().Lister()
	}
	return p, nil
}

// Name implements framework.Plugin.
func (*PodTopologySpread) Name() string { return Name }

// EventsToRegister implements framework.EnqueueExtensions.
func (*PodTopologySpread) EventsToRegister() []framework.ClusterEvent {
	return []framework.ClusterEvent{framework.EventAssignedPodAdd, framework.EventAssignedPodUpdate, framework.EventAssignedPodDelete, framework.EventNodeAdd, framework.EventNodeUpdate}
}

// constraint is a parsed topology spread constraint.
type constraint struct {
	MaxSkew           int32
	TopologyKey       string
	Selector          labels.Selector
	MinDomains        int32
	HonorNodeAffinity bool
	HonorNodeTaints   bool
}

func (p *PodTopologySpread) constraints(pod *corev1.Pod, when corev1.UnsatisfiableConstraintAction) ([]constraint, error) {
	if len(pod.Spec.TopologySpreadConstraints) > 0 {
		return parse(pod, pod.Spec.TopologySpreadConstraints, when)
	}
	if len(p.defaults) == 0 {
		return nil, nil
	}
	sel := p.defaultSelector(pod)
	if sel.Empty() {
		return nil, nil
	}
	var out []constraint
	for _, c := range p.defaults {
		if c.WhenUnsatisfiable != when {
			continue
		}
		out = append(out, constraint{MaxSkew: c.MaxSkew, TopologyKey: c.TopologyKey, Selector: sel, MinDomains: 1, HonorNodeAffinity: true})
	}
	return out, nil
}

func parse(pod *corev1.Pod, cs []corev1.TopologySpreadConstraint, when corev1.UnsatisfiableConstraintAction) ([]constraint, error) {
	var out []constraint
	for _, c := range cs {
		if c.WhenUnsatisfiable != when {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(c.LabelSelector)
		if err != nil {
			return nil, err
		}
		for _, k := range c.MatchLabelKeys {
			if v, ok := pod.Labels[k]; ok {
				if r, err := labels.NewRequirement(k, "in", []string{v}); err == nil {
					sel = sel.Add(*r)
				}
			}
		}
		pc := constraint{MaxSkew: c.MaxSkew, TopologyKey: c.TopologyKey, Selector: sel, MinDomains: 1, HonorNodeAffinity: true}
		if c.MinDomains != nil {
			pc.MinDomains = *c.MinDomains
		}
		if c.NodeAffinityPolicy != nil && *c.NodeAffinityPolicy == corev1.NodeInclusionPolicyIgnore {
			pc.HonorNodeAffinity = false
		}
		if c.NodeTaintsPolicy != nil && *c.NodeTaintsPolicy == corev1.NodeInclusionPolicyHonor {
			pc.HonorNodeTaints = true
		}
		out = append(out, pc)
	}
	return out, nil
}

// defaultSelector merges the selectors of the workloads selecting pod.
func (p *PodTopologySpread) defaultSelector(pod *corev1.Pod) labels.Selector {
	set := labels.Set{}
	sel := labels.NewSelector()
	podLabels := labels.Set(pod.Labels)
	if p.services != nil {
		if svcs, err := p.services.Services(pod.Namespace).List(labels.Everything()); err == nil {
			for _, s := range svcs {
				if len(s.Spec.Selector) > 0 && subsetOf(s.Spec.Selector, podLabels) {
					for k, v := range s.Spec.Selector {
						set[k] = v
					}
				}
			}
		}
	}
	if p.rcs != nil {
		if rcs, err := p.rcs.ReplicationControllers(pod.Namespace).List(labels.Everything()); err == nil {
			for _, rc := range rcs {
				if len(rc.Spec.Selector) > 0 && subsetOf(rc.Spec.Selector, podLabels) {
					for k, v := range rc.Spec.Selector {
						set[k] = v
					}
				}
			}
		}
	}
	for k, v := range set {
		if r, err := labels.NewRequirement(k, "=", []string{v}); err == nil {
			sel = sel.Add(*r)
		}
	}
	addLS := func(ls *metav1.LabelSelector) {
		if !mayMatch(ls, podLabels) {
			return // the namespace's other workloads: skip parsing theirs
		}
		s, err := metav1.LabelSelectorAsSelector(ls)
		if err != nil || s.Empty() || !s.Matches(podLabels) {
			return
		}
		if reqs, ok := s.Requirements(); ok {
			sel = sel.Add(reqs...)
		}
	}
	if p.rss != nil {
		if rss, err := p.rss.ReplicaSets(pod.Namespace).List(labels.Everything()); err == nil {
			for _, rs := range rss {
				addLS(rs.Spec.Selector)
			}
		}
	}
	if p.sss != nil {
		if sss, err := p.sss.StatefulSets(pod.Namespace).List(labels.Everything()); err == nil {
			for _, ss := range sss {
				addLS(ss.Spec.Selector)
			}
		}
	}
	return sel
}

// subsetOf reports whether every label of sel is set to the same value in
// l: what SelectorFromSet(sel).Matches(l) answers, without building the
// selector.
func subsetOf(sel map[string]string, l labels.Set) bool {
	for k, v := range sel {
		if w, ok := l[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// mayMatch is false only when ls certainly does not select l; selectors it
// lets through are parsed and validated by LabelSelectorAsSelector. It
// spares the parse for every workload of the namespace on every
// scheduling cycle, most of which select other pods.
func mayMatch(ls *metav1.LabelSelector, l labels.Set) bool {
	if ls == nil {
		return false
	}
	if !subsetOf(ls.MatchLabels, l) {
		return false
	}
	for _, e := range ls.MatchExpressions {
		v, ok := l[e.Key]
		switch e.Operator {
		case metav1.LabelSelectorOpIn:
			if !ok || !slices.Contains(e.Values, v) {
				return false
			}
		case metav1.LabelSelectorOpNotIn:
			if ok && slices.Contains(e.Values, v) {
				return false
			}
		case metav1.LabelSelectorOpExists:
			if !ok {
				return false
			}
		case metav1.LabelSelectorOpDoesNotExist:
			if ok {
				return false
			}
		}
	}
	return true
}

type pair struct{ key, value string }

type preFilterState struct {
	constraints []constraint
	matchNum    map[pair]int
	domains     map[string]int // number of eligible domains per key
	mins        map[string]int // smallest count per key
}

func (s *preFilterState) Clone() framework.StateData {
	out := &preFilterState{constraints: s.constraints, matchNum: make(map[pair]int, len(s.matchNum)), domains: s.domains, mins: map[string]int{}}
	for k, v := range s.matchNum {
		out.matchNum[k] = v
	}
	for k, v := range s.mins {
		out.mins[k] = v
	}
	return out
}

// computeMins records the smallest count among each key's eligible domains.
func (s *preFilterState) computeMins() {
	s.mins = map[string]int{}
	for p, n := range s.matchNum {
		if m, ok := s.mins[p.key]; !ok || n < m {
			s.mins[p.key] = n
		}
	}
}

func eligible(pod *corev1.Pod, node *corev1.Node, c *constraint) bool {
	if c.HonorNodeAffinity && !framework.PodMatchesNodeSelectorAndAffinity(pod, node) {
		return false
	}
	if c.HonorNodeTaints {
		if _, bad := framework.FindUntoleratedTaint(node.Spec.Taints, pod.Spec.Tolerations, corev1.TaintEffectNoSchedule, corev1.TaintEffectNoExecute); bad {
			return false
		}
	}
	return true
}

func hasAllKeys(node *corev1.Node, cs []constraint) bool {
	for i := range cs {
		if _, ok := node.Labels[cs[i].TopologyKey]; !ok {
			return false
		}
	}
	return true
}

// countMatching counts the pods in ns that sel matches and that are not
// being deleted. mm, if not nil, remembers sel's answers by namespace and
// labels for this cycle (the pods of a workload share them).
func countMatching(pods []*framework.PodInfo, ns string, sel labels.Selector, mm *framework.MatchMemo) int {
	n := 0
	for _, pi := range pods {
		if pi.Pod.DeletionTimestamp != nil {
			continue
		}
		m, ok := mm.Load(pi.LabelsKey)
		if !ok {
			if pi.Pod.Namespace == ns && sel.Matches(labels.Set(pi.Pod.Labels)) {
				m = 1
			}
			mm.Store(pi.LabelsKey, m)
		}
		n += int(m)
	}
	return n
}

// newMemos returns one memo per constraint: each has its own selector.
func newMemos(n int) []*framework.MatchMemo {
	m := make([]*framework.MatchMemo, n)
	for i := range m {
		m[i] = &framework.MatchMemo{}
	}
	return m
}

// PreFilter implements framework.PreFilterPlugin.
func (p *PodTopologySpread) PreFilter(ctx context.Context, state *framework.CycleState, pod *corev1.Pod) (*framework.PreFilterResult, *framework.Status) {
	cs, err := p.constraints(pod, corev1.DoNotSchedule)
	if err != nil {
		return nil, framework.AsStatus(fmt.Errorf("obtaining pod's hard topology spread constraints: %w", err))
	}
	if len(cs) == 0 {
		return nil, framework.NewStatus(framework.Skip)
	}
	nodes := p.h.SnapshotSharedLister().List()
	s := &preFilterState{constraints: cs, matchNum: map[pair]int{}, domains: map[string]int{}}
	memos := newMemos(len(cs))
	var mu sync.Mutex
	p.h.Parallelizer().Until(ctx, len(nodes), func(i int) {
		node := nodes[i].Node()
		if node == nil || !hasAllKeys(node, cs) {
			return
		}
		local := make(map[pair]int, len(cs))
		for j := range cs {
			c := &cs[j]
			if !eligible(pod, node, c) {
				continue
			}
			local[pair{c.TopologyKey, node.Labels[c.TopologyKey]}] += countMatching(nodes[i].Pods, pod.Namespace, c.Selector, memos[j])
		}
		mu.Lock()
		for k, v := range local {
			s.matchNum[k] += v
		}
		mu.Unlock()
	})
	for k := range s.matchNum {
		s.domains[k.key]++
	}
	s.computeMins()
	state.Write(preFilterKey, s)
	return nil, nil
}

// PreFilterExtensions implements framework.PreFilterPlugin.
func (p *PodTopologySpread) PreFilterExtensions() framework.PreFilterExtensions { return p }

// AddPod implements framework.PreFilterExtensions.
func (p *PodTopologySpread) AddPod(_ context.Context, state *framework.CycleState, pod *corev1.Pod, add *framework.PodInfo, ni *framework.NodeInfo) *framework.Status {
	return p.update(state, pod, add.Pod, ni, 1)
}

// RemovePod implements framework.PreFilterExtensions.
func (p *PodTopologySpread) RemovePod(_ context.Context, state *framework.CycleState, pod *corev1.Pod, rm *framework.PodInfo, ni *framework.NodeInfo) *framework.Status {
	return p.update(state, pod, rm.Pod, ni, -1)
}

func (p *PodTopologySpread) update(state *framework.CycleState, pod, other *corev1.Pod, ni *framework.NodeInfo, delta int) *framework.Status {
	d, err := state.Read(preFilterKey)
	if err != nil {
		return nil
	}
	s := d.(*preFilterState)
	node := ni.Node()
	if node == nil || !hasAllKeys(node, s.constraints) || other.Namespace != pod.Namespace {
		return nil
	}
	for i := range s.constraints {
		c := &s.constraints[i]
		if eligible(pod, node, c) && c.Selector.Matches(labels.Set(other.Labels)) {
			s.matchNum[pair{c.TopologyKey, node.Labels[c.TopologyKey]}] += delta
		}
	}
	s.computeMins()
	return nil
}

// Filter implements framework.FilterPlugin.
func (p *PodTopologySpread) Filter(_ context.Context, state *framework.CycleState, pod *corev1.Pod, ni *framework.NodeInfo) *framework.Status {
	d, err := state.Read(preFilterKey)
	if err != nil {
		return framework.AsStatus(fmt.Errorf("reading %q from cycleState: %w", preFilterKey, err))
	}
	s := d.(*preFilterState)
	node := ni.Node()
	podLabels := labels.Set(pod.Labels)
	for i := range s.constraints {
		c := &s.constraints[i]
		v, ok := node.Labels[c.TopologyKey]
		if !ok {
			return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonNodeLabelNotMatch)
		}
		self := 0
		if c.Selector.Matches(podLabels) {
			self = 1
		}
		minMatch := s.mins[c.TopologyKey]
		if int32(s.domains[c.TopologyKey]) < c.MinDomains {
			minMatch = 0
		}
		if skew := s.matchNum[pair{c.TopologyKey, v}] + self - minMatch; skew > int(c.MaxSkew) {
			return framework.NewStatus(framework.Unschedulable, ErrReasonConstraintsNotMatch)
		}
	}
	return nil
}

type preScoreState struct {
	constraints []constraint
	ignored     sets.Set[string]
	counts      map[pair]int64
	weights     []float64
}

func (s *preScoreState) Clone() framework.StateData { return s }

// PreScore implements framework.PreScorePlugin.
func (p *PodTopologySpread) PreScore(ctx context.Context, state *framework.CycleState, pod *corev1.Pod, filtered []*framework.NodeInfo) *framework.Status {
	cs, err := p.constraints(pod, corev1.ScheduleAnyway)
	if err != nil {
		return framework.AsStatus(fmt.Errorf("obtaining pod's soft topology spread constraints: %w", err))
	}
	if len(cs) == 0 {
		return framework.NewStatus(framework.Skip)
	}
	s := &preScoreState{constraints: cs, ignored: sets.New[string](), counts: map[pair]int64{}, weights: make([]float64, len(cs))}
	domains := make([]sets.Set[string], len(cs))
	for i := range domains {
		domains[i] = sets.New[string]()
	}
	for _, ni := range filtered {
		node := ni.Node()
		if !hasAllKeys(node, cs) {
			s.ignored.Insert(node.Name)
			continue
		}
		for i := range cs {
			v := node.Labels[cs[i].TopologyKey]
			domains[i].Insert(v)
			s.counts[pair{cs[i].TopologyKey, v}] += 0
		}
	}
	for i := range cs {
		s.weights[i] = math.Log(float64(domains[i].Len() + 2))
	}
	all := p.h.SnapshotSharedLister().List()
	memos := newMemos(len(cs))
	var mu sync.Mutex
	p.h.Parallelizer().Until(ctx, len(all), func(i int) {
		node := all[i].Node()
		if node == nil {
			return
		}
		for j := range cs {
			c := &cs[j]
			v, ok := node.Labels[c.TopologyKey]
			if !ok || !eligible(pod, node, c) {
				continue
			}
			k := pair{c.TopologyKey, v}
			mu.Lock()
			_, tracked := s.counts[k]
			mu.Unlock()
			if !tracked {
				continue
			}
			n := int64(countMatching(all[i].Pods, pod.Namespace, c.Selector, memos[j]))
			mu.Lock()
			s.counts[k] += n
			mu.Unlock()
		}
	})
	state.Write(preScoreKey, s)
	return nil
}

// Score implements framework.ScorePlugin.
func (p *PodTopologySpread) Score(_ context.Context, state *framework.CycleState, _ *corev1.Pod, ni *framework.NodeInfo) (int64, *framework.Status) {
	d, err := state.Read(preScoreKey)
	if err != nil {
		return 0, framework.AsStatus(fmt.Errorf("reading %q from cycleState: %w", preScoreKey, err))
	}
	s := d.(*preScoreState)
	node := ni.Node()
	if s.ignored.Has(node.Name) {
		return 0, nil
	}
	var score float64
	for i := range s.constraints {
		c := &s.constraints[i]
		if v, ok := node.Labels[c.TopologyKey]; ok {
			score += float64(s.counts[pair{c.TopologyKey, v}])*s.weights[i] + float64(c.MaxSkew-1)
		}
	}
	return int64(math.Round(score)), nil
}

// ScoreExtensions implements framework.ScorePlugin.
func (p *PodTopologySpread) ScoreExtensions() framework.ScoreExtensions { return p }

// NormalizeScore implements framework.ScoreExtensions: fewer matching pods
// in a node's domains give a higher score; ignored nodes get 0.
func (p *PodTopologySpread) NormalizeScore(_ context.Context, state *framework.CycleState, _ *corev1.Pod, scores framework.NodeScoreList) *framework.Status {
	d, err := state.Read(preScoreKey)
	if err != nil {
		return framework.AsStatus(fmt.Errorf("reading %q from cycleState: %w", preScoreKey, err))
	}
	s := d.(*preScoreState)
	var lo, hi int64 = math.MaxInt64, 0
	for _, sc := range scores {
		if s.ignored.Has(sc.Name) {
			continue
		}
		lo, hi = min(lo, sc.Score), max(hi, sc.Score)
	}
	for i := range scores {
		switch {
		case s.ignored.Has(scores[i].Name):
			scores[i].Score = 0
		case hi == 0:
			scores[i].Score = framework.MaxNodeScore
		default:
			scores[i].Score = framework.MaxNodeScore * (hi + lo - scores[i].Score) / hi
		}
	}
	return nil
}
