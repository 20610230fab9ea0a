// Package interpodaffinity is the InterPodAffinity plugin: required pod
// affinity and anti-affinity (of the incoming pod, and the anti-affinity of
// pods already running) filter nodes by topology domain; preferred terms
// score them. Counts are computed once per cycle in PreFilter/PreScore by
// walking only the pods that can matter, so Filter and Score are map
// lookups per node.
package interpodaffinity

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
)

// Name of the plugin and its rejection reasons.
const (
	Name                                       = "InterPodAffinity"
	ErrReasonExistingAntiAffinityRulesNotMatch = "node(s) didn't satisfy existing pods anti-affinity rules"
	ErrReasonAffinityRulesNotMatch             = "node(s) didn't match pod affinity rules"
	ErrReasonAntiAffinityRulesNotMatch         = "node(s) didn't match pod anti-affinity rules"
)

const (
	preFilterKey = "PreFilter" + Name
	preScoreKey  = "PreScore" + Name
)

func init() { framework.Register(Name, New) }

// Args are InterPodAffinityArgs.
type Args struct {
	// HardPodAffinityWeight scores existing pods' required affinity terms
	// that match the incoming pod (default 1, 0-100).
	HardPodAffinityWeight *int32 `json:"hardPodAffinityWeight,omitempty"`
	// IgnorePreferredTermsOfExistingPods skips existing pods' preferred
	// terms in scoring.
	IgnorePreferredTermsOfExistingPods bool `json:"ignorePreferredTermsOfExistingPods,omitempty"`
}

// InterPodAffinity is the plugin.
type InterPodAffinity struct {
	h          framework.Handle
	hardWeight int64
	ignorePref bool
	nsLister   corelisters.NamespaceLister
}

var (
	_ framework.PreFilterPlugin   = (*InterPodAffinity)(nil)
	_ framework.FilterPlugin      = (*InterPodAffinity)(nil)
	_ framework.PreScorePlugin    = (*InterPodAffinity)(nil)
	_ framework.ScorePlugin       = (*InterPodAffinity)(nil)
	_ framework.EnqueueExtensions = (*InterPodAffinity)(nil)
)

// New builds the plugin.
func New(raw json.RawMessage, h framework.Handle) (framework.Plugin, error) {
	var a Args
	if err := framework.DecodeArgs(raw, &a); err != nil {
		return nil, err
	}
	p := &InterPodAffinity{h: h, hardWeight: 1, ignorePref: a.IgnorePreferredTermsOfExistingPods}
	if a.HardPodAffinityWeight != nil {
		if *a.HardPodAffinityWeight < 0 || *a.HardPodAffinityWeight > 100 {
			return nil, fmt.Errorf("hardPodAffinityWeight: Invalid value: %d: not in valid range [0-100]", *a.HardPodAffinityWeight)
		}
		p.hardWeight = int64(*a.HardPodAffinityWeight)
	}
	if h != nil && h.SharedInformerFactory() != nil {
		p.nsLister = h.SharedInformerFactory().Core().V1().Namespaces().Lister()
	}
	return p, nil
}

// Name implements framework.Plugin.
func (*InterPodAffinity) Name() string { return Name }

// EventsToRegister implements framework.EnqueueExtensions.
func (*InterPodAffinity) EventsToRegister() []framework.ClusterEvent {
	return []framework.ClusterEvent{framework.EventAssignedPodAdd, framework.EventAssignedPodUpdate, framework.EventAssignedPodDelete, framework.EventNodeAdd, framework.EventNodeUpdate}
}

type pair struct{ key, value string }

type counts map[pair]int64

func (c counts) add(o counts) {
	for k, v := range o {
		c[k] += v
	}
}

func (c counts) clone() counts {
	out := make(counts, len(c))
	for k, v := range c {
		out[k] = v
	}
	return out
}

type preFilterState struct {
	pod                  *framework.PodInfo
	existingAntiAffinity counts
	// existingAntiKeys are the topology keys in existingAntiAffinity, so
	// Filter looks up only those of a node's labels.
	existingAntiKeys []string
	affinity         counts
	antiAffinity     counts
	nsLabels         labels.Set
}

func (s *preFilterState) Clone() framework.StateData {
	return &preFilterState{pod: s.pod, existingAntiAffinity: s.existingAntiAffinity.clone(), existingAntiKeys: slices.Clone(s.existingAntiKeys), affinity: s.affinity.clone(), antiAffinity: s.antiAffinity.clone(), nsLabels: s.nsLabels}
}

// nsLabelCache resolves namespace labels for namespaceSelector terms.
type nsLabelCache struct {
	lister corelisters.NamespaceLister
	mu     sync.Mutex
	m      map[string]labels.Set
}

func (c *nsLabelCache) get(ns string) labels.Set {
	if c == nil || c.lister == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if l, ok := c.m[ns]; ok {
		return l
	}
	var l labels.Set
	if n, err := c.lister.Get(ns); err == nil {
		l = n.Labels
	}
	c.m[ns] = l
	return l
}

func termsUseNamespaceSelector(terms ...[]framework.AffinityTerm) bool {
	for _, ts := range terms {
		for i := range ts {
			if ts[i].HasNamespaceSelector {
				return true
			}
		}
	}
	return false
}

func (p *InterPodAffinity) nsCache() *nsLabelCache {
	return &nsLabelCache{lister: p.nsLister, m: map[string]labels.Set{}}
}

// matches reports whether target matches term (resolving namespace labels
// only when the term has a namespace selector).
func matches(t *framework.AffinityTerm, target *corev1.Pod, nsc *nsLabelCache) bool {
	if t.Namespaces.Has(target.Namespace) {
		return t.Selector.Matches(labels.Set(target.Labels))
	}
	if !t.HasNamespaceSelector {
		return false
	}
	return t.NamespaceSelector.Matches(nsc.get(target.Namespace)) && t.Selector.Matches(labels.Set(target.Labels))
}

func matchesAll(terms []framework.AffinityTerm, target *corev1.Pod, nsc *nsLabelCache) bool {
	if len(terms) == 0 {
		return false
	}
	for i := range terms {
		if !matches(&terms[i], target, nsc) {
			return false
		}
	}
	return true
}

// PreFilter implements framework.PreFilterPlugin.
func (p *InterPodAffinity) PreFilter(ctx context.Context, state *framework.CycleState, pod *corev1.Pod) (*framework.PreFilterResult, *framework.Status) {
	pi := framework.NewPodInfo(pod)
	if pi.ParseError != nil {
		return nil, framework.NewStatus(framework.UnschedulableAndUnresolvable, fmt.Sprintf("parsing pod: %v", pi.ParseError))
	}
	lister := p.h.SnapshotSharedLister()
	withAnti := lister.HavePodsWithRequiredAntiAffinityList()
	hasOwn := len(pi.RequiredAffinityTerms) > 0 || len(pi.RequiredAntiAffinityTerms) > 0
	if len(withAnti) == 0 && !hasOwn {
		return nil, framework.NewStatus(framework.Skip)
	}
	nsc := p.nsCache()
	s := &preFilterState{pod: pi, existingAntiAffinity: counts{}, affinity: counts{}, antiAffinity: counts{}}
	var mu sync.Mutex
	// Existing pods whose required anti-affinity matches the incoming pod.
	// Pods of one workload share their terms, so each distinct term is
	// matched once per cycle (termMemo), not once per pod.
	termMemo := &framework.MatchMemo{}
	p.h.Parallelizer().Until(ctx, len(withAnti), func(i int) {
		ni := withAnti[i]
		local := counts{}
		for _, ex := range ni.PodsWithRequiredAntiAffinity {
			existingAntiCounts(local, ex, pod, ni.Node(), nsc, 1, termMemo)
		}
		if len(local) > 0 {
			mu.Lock()
			s.existingAntiAffinity.add(local)
			mu.Unlock()
		}
	})
	if hasOwn {
		// The incoming pod's terms against every pod: matched once per
		// distinct namespace and label set (podMemo).
		podMemo := &framework.MatchMemo{}
		all := lister.List()
		p.h.Parallelizer().Until(ctx, len(all), func(i int) {
			ni := all[i]
			aff, anti := counts{}, counts{}
			for _, ex := range ni.Pods {
				incomingCounts(aff, anti, pi, ex, ni.Node(), nsc, 1, podMemo)
			}
			if len(aff) > 0 || len(anti) > 0 {
				mu.Lock()
				s.affinity.add(aff)
				s.antiAffinity.add(anti)
				mu.Unlock()
			}
		})
	}
	for k := range s.existingAntiAffinity {
		s.noteAntiKey(k.key)
	}
	if termsUseNamespaceSelector(pi.RequiredAffinityTerms) {
		s.nsLabels = nsc.get(pod.Namespace)
	}
	state.Write(preFilterKey, s)
	return nil, nil
}

// existingAntiCounts counts the domains where ex's required anti-affinity
// terms match pod. mm, if not nil, remembers answers by term for this pod.
func existingAntiCounts(c counts, ex *framework.PodInfo, pod *corev1.Pod, node *corev1.Node, nsc *nsLabelCache, delta int64, mm *framework.MatchMemo) {
	for i := range ex.RequiredAntiAffinityTerms {
		t := &ex.RequiredAntiAffinityTerms[i]
		m, ok := mm.Load(t.Key)
		if !ok {
			if matches(t, pod, nsc) {
				m = 1
			}
			mm.Store(t.Key, m)
		}
		if m == 0 {
			continue
		}
		if v, ok := node.Labels[t.TopologyKey]; ok {
			c[pair{t.TopologyKey, v}] += delta
		}
	}
}

// memoTerms is how many anti-affinity terms of the incoming pod have a bit
// in incomingBits; bit 0 is "all affinity terms match".
const memoTerms = 63

// incomingBits matches ex against the incoming pod's required terms: bit
// 0 for all affinity terms, bit 1+i for anti-affinity term i < memoTerms.
func incomingBits(pi *framework.PodInfo, ex *corev1.Pod, nsc *nsLabelCache) uint64 {
	var b uint64
	if len(pi.RequiredAffinityTerms) > 0 && matchesAll(pi.RequiredAffinityTerms, ex, nsc) {
		b |= 1
	}
	for i := range pi.RequiredAntiAffinityTerms[:min(len(pi.RequiredAntiAffinityTerms), memoTerms)] {
		if matches(&pi.RequiredAntiAffinityTerms[i], ex, nsc) {
			b |= 1 << (i + 1)
		}
	}
	return b
}

// incomingCounts counts the domains of existing pod ex that match the
// incoming pod's required affinity (all terms) and anti-affinity terms.
// mm, if not nil, remembers answers by ex's namespace and labels.
func incomingCounts(aff, anti counts, pi *framework.PodInfo, ex *framework.PodInfo, node *corev1.Node, nsc *nsLabelCache, delta int64, mm *framework.MatchMemo) {
	bits, ok := mm.Load(ex.LabelsKey)
	if !ok {
		bits = incomingBits(pi, ex.Pod, nsc)
		mm.Store(ex.LabelsKey, bits)
	}
	if bits&1 != 0 {
		for i := range pi.RequiredAffinityTerms {
			t := &pi.RequiredAffinityTerms[i]
			if v, ok := node.Labels[t.TopologyKey]; ok {
				aff[pair{t.TopologyKey, v}] += delta
			}
		}
	}
	for i := range pi.RequiredAntiAffinityTerms {
		t := &pi.RequiredAntiAffinityTerms[i]
		var m bool
		if i < memoTerms {
			m = bits&(1<<(i+1)) != 0
		} else {
			m = matches(t, ex.Pod, nsc)
		}
		if !m {
			continue
		}
		if v, ok := node.Labels[t.TopologyKey]; ok {
			anti[pair{t.TopologyKey, v}] += delta
		}
	}
}

// PreFilterExtensions implements framework.PreFilterPlugin.
func (p *InterPodAffinity) PreFilterExtensions() framework.PreFilterExtensions { return p }

// AddPod implements framework.PreFilterExtensions.
func (p *InterPodAffinity) AddPod(_ context.Context, state *framework.CycleState, pod *corev1.Pod, add *framework.PodInfo, ni *framework.NodeInfo) *framework.Status {
	return p.updateWith(state, pod, add, ni, 1)
}

// RemovePod implements framework.PreFilterExtensions.
func (p *InterPodAffinity) RemovePod(_ context.Context, state *framework.CycleState, pod *corev1.Pod, rm *framework.PodInfo, ni *framework.NodeInfo) *framework.Status {
	return p.updateWith(state, pod, rm, ni, -1)
}

func (p *InterPodAffinity) updateWith(state *framework.CycleState, pod *corev1.Pod, other *framework.PodInfo, ni *framework.NodeInfo, delta int64) *framework.Status {
	d, err := state.Read(preFilterKey)
	if err != nil {
		return nil // skipped in PreFilter: nothing to update
	}
	s := d.(*preFilterState)
	nsc := p.nsCache()
	existingAntiCounts(s.existingAntiAffinity, other, pod, ni.Node(), nsc, delta, nil)
	incomingCounts(s.affinity, s.antiAffinity, s.pod, other, ni.Node(), nsc, delta, nil)
	for i := range other.RequiredAntiAffinityTerms {
		s.noteAntiKey(other.RequiredAntiAffinityTerms[i].TopologyKey)
	}
	return nil
}

// noteAntiKey adds k to existingAntiKeys if missing (a key without counts
// costs Filter a lookup, nothing else).
func (s *preFilterState) noteAntiKey(k string) {
	if !slices.Contains(s.existingAntiKeys, k) {
		s.existingAntiKeys = append(s.existingAntiKeys, k)
	}
}

// Filter implements framework.FilterPlugin.
func (p *InterPodAffinity) Filter(_ context.Context, state *framework.CycleState, pod *corev1.Pod, ni *framework.NodeInfo) *framework.Status {
	d, err := state.Read(preFilterKey)
	if err != nil {
		return framework.AsStatus(fmt.Errorf("reading %q from cycleState: %w", preFilterKey, err))
	}
	s := d.(*preFilterState)
	node := ni.Node()
	for _, k := range s.existingAntiKeys {
		if v, ok := node.Labels[k]; ok && s.existingAntiAffinity[pair{k, v}] > 0 {
			return framework.NewStatus(framework.Unschedulable, ErrReasonExistingAntiAffinityRulesNotMatch)
		}
	}
	if terms := s.pod.RequiredAffinityTerms; len(terms) > 0 {
		ok := true
		for i := range terms {
			v, has := node.Labels[terms[i].TopologyKey]
			if !has || s.affinity[pair{terms[i].TopologyKey, v}] <= 0 {
				ok = false
				break
			}
		}
		if !ok {
			// The first pod of a group that matches its own affinity may
			// go anywhere the topology keys exist.
			selfMatch := len(s.affinity) == 0 && matchesAllSelf(terms, pod, s.nsLabels)
			if selfMatch {
				for i := range terms {
					if _, has := node.Labels[terms[i].TopologyKey]; !has {
						selfMatch = false
					}
				}
			}
			if !selfMatch {
				return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonAffinityRulesNotMatch)
			}
		}
	}
	for i := range s.pod.RequiredAntiAffinityTerms {
		t := &s.pod.RequiredAntiAffinityTerms[i]
		if v, has := node.Labels[t.TopologyKey]; has && s.antiAffinity[pair{t.TopologyKey, v}] > 0 {
			return framework.NewStatus(framework.Unschedulable, ErrReasonAntiAffinityRulesNotMatch)
		}
	}
	return nil
}

func matchesAllSelf(terms []framework.AffinityTerm, pod *corev1.Pod, nsLabels labels.Set) bool {
	for i := range terms {
		if !terms[i].Matches(pod, nsLabels) {
			return false
		}
	}
	return true
}

type scoreState struct {
	scores map[string]map[string]int64
}

func (s *scoreState) Clone() framework.StateData { return s }

// PreScore implements framework.PreScorePlugin.
func (p *InterPodAffinity) PreScore(ctx context.Context, state *framework.CycleState, pod *corev1.Pod, nodes []*framework.NodeInfo) *framework.Status {
	pi := framework.NewPodInfo(pod)
	hasPref := len(pi.PreferredAffinityTerms) > 0 || len(pi.PreferredAntiAffinityTerms) > 0
	lister := p.h.SnapshotSharedLister()
	var candidates []*framework.NodeInfo
	if hasPref {
		candidates = lister.List()
	} else {
		candidates = lister.HavePodsWithAffinityList()
	}
	if len(candidates) == 0 {
		return framework.NewStatus(framework.Skip)
	}
	nsc := p.nsCache()
	total := map[string]map[string]int64{}
	var mu sync.Mutex
	p.h.Parallelizer().Until(ctx, len(candidates), func(i int) {
		ni := candidates[i]
		if ni.Node() == nil {
			return
		}
		local := map[string]map[string]int64{}
		list := ni.PodsWithAffinity
		if hasPref {
			list = ni.Pods
		}
		for _, ex := range list {
			p.scoreExisting(local, pi, ex, ni.Node(), nsc)
		}
		if len(local) == 0 {
			return
		}
		mu.Lock()
		for k, m := range local {
			if total[k] == nil {
				total[k] = map[string]int64{}
			}
			for v, n := range m {
				total[k][v] += n
			}
		}
		mu.Unlock()
	})
	if len(total) == 0 {
		return framework.NewStatus(framework.Skip)
	}
	state.Write(preScoreKey, &scoreState{scores: total})
	return nil
}

func (p *InterPodAffinity) scoreExisting(out map[string]map[string]int64, pi *framework.PodInfo, ex *framework.PodInfo, node *corev1.Node, nsc *nsLabelCache) {
	add := func(t *framework.AffinityTerm, w int64) {
		if w == 0 {
			return
		}
		v, ok := node.Labels[t.TopologyKey]
		if !ok {
			return
		}
		if out[t.TopologyKey] == nil {
			out[t.TopologyKey] = map[string]int64{}
		}
		out[t.TopologyKey][v] += w
	}
	for i := range pi.PreferredAffinityTerms {
		if t := &pi.PreferredAffinityTerms[i]; matches(&t.AffinityTerm, ex.Pod, nsc) {
			add(&t.AffinityTerm, int64(t.Weight))
		}
	}
	for i := range pi.PreferredAntiAffinityTerms {
		if t := &pi.PreferredAntiAffinityTerms[i]; matches(&t.AffinityTerm, ex.Pod, nsc) {
			add(&t.AffinityTerm, -int64(t.Weight))
		}
	}
	if p.hardWeight > 0 {
		for i := range ex.RequiredAffinityTerms {
			if t := &ex.RequiredAffinityTerms[i]; matches(t, pi.Pod, nsc) {
				add(t, p.hardWeight)
			}
		}
	}
	if p.ignorePref {
		return
	}
	for i := range ex.PreferredAffinityTerms {
		if t := &ex.PreferredAffinityTerms[i]; matches(&t.AffinityTerm, pi.Pod, nsc) {
			add(&t.AffinityTerm, int64(t.Weight))
		}
	}
	for i := range ex.PreferredAntiAffinityTerms {
		if t := &ex.PreferredAntiAffinityTerms[i]; matches(&t.AffinityTerm, pi.Pod, nsc) {
			add(&t.AffinityTerm, -int64(t.Weight))
		}
	}
}

// Score implements framework.ScorePlugin.
func (p *InterPodAffinity) Score(_ context.Context, state *framework.CycleState, _ *corev1.Pod, ni *framework.NodeInfo) (int64, *framework.Status) {
	d, err := state.Read(preScoreKey)
	if err != nil {
		return 0, framework.AsStatus(fmt.Errorf("reading %q from cycleState: %w", preScoreKey, err))
	}
	var score int64
	for key, m := range d.(*scoreState).scores {
		if v, ok := ni.Node().Labels[key]; ok {
			score += m[v]
		}
	}
	return score, nil
}

// ScoreExtensions implements framework.ScorePlugin.
func (p *InterPodAffinity) ScoreExtensions() framework.ScoreExtensions { return p }

// NormalizeScore implements framework.ScoreExtensions: min-max scaling.
func (p *InterPodAffinity) NormalizeScore(_ context.Context, state *framework.CycleState, _ *corev1.Pod, scores framework.NodeScoreList) *framework.Status {
	if len(scores) == 0 {
		return nil
	}
	lo, hi := scores[0].Score, scores[0].Score
	for _, s := range scores {
		lo, hi = min(lo, s.Score), max(hi, s.Score)
	}
	for i := range scores {
		if hi > lo {
			scores[i].Score = framework.MaxNodeScore * (scores[i].Score - lo) / (hi - lo)
		} else {
			scores[i].Score = 0
		}
	}
	return nil
}
