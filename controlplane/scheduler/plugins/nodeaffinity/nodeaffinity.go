// Package nodeaffinity is the NodeAffinity plugin: a pod fits nodes that
// match its spec.nodeSelector and required node affinity, and prefers nodes
// matching its preferred terms (the weights of the matching terms summed).
// Args: addedAffinity, applied to every pod of the profile.
package nodeaffinity

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
)

// Name of the plugin; ErrReasonPod its rejection.
const (
	Name         = "NodeAffinity"
	ErrReasonPod = "node(s) didn't match Pod's node affinity/selector"
	// ErrReasonEnforced rejects nodes that fail the profile's addedAffinity.
	ErrReasonEnforced = "node(s) didn't match scheduler-enforced node affinity"
)

const preScoreKey = "PreScore" + Name

func init() { framework.Register(Name, New) }

// Args are the plugin's args.
type Args struct {
	AddedAffinity *corev1.NodeAffinity `json:"addedAffinity,omitempty"`
}

// NodeAffinity filters and scores by node affinity.
type NodeAffinity struct {
	added *corev1.NodeAffinity
}

var (
	_ framework.PreFilterPlugin   = (*NodeAffinity)(nil)
	_ framework.FilterPlugin      = (*NodeAffinity)(nil)
	_ framework.PreScorePlugin    = (*NodeAffinity)(nil)
	_ framework.ScorePlugin       = (*NodeAffinity)(nil)
	_ framework.EnqueueExtensions = (*NodeAffinity)(nil)
)

// New builds the plugin.
func New(raw json.RawMessage, _ framework.Handle) (framework.Plugin, error) {
	var a Args
	if err := framework.DecodeArgs(raw, &a); err != nil {
		return nil, err
	}
	return &NodeAffinity{added: a.AddedAffinity}, nil
}

// Name implements framework.Plugin.
func (*NodeAffinity) Name() string { return Name }

// EventsToRegister implements framework.EnqueueExtensions.
func (*NodeAffinity) EventsToRegister() []framework.ClusterEvent {
	return []framework.ClusterEvent{framework.EventNodeAdd, framework.EventNodeUpdate}
}

// PreFilter implements framework.PreFilterPlugin: required terms that name
// nodes by metadata.name narrow the nodes to evaluate.
func (p *NodeAffinity) PreFilter(_ context.Context, _ *framework.CycleState, pod *corev1.Pod) (*framework.PreFilterResult, *framework.Status) {
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		if len(pod.Spec.NodeSelector) == 0 && p.added == nil {
			return nil, framework.NewStatus(framework.Skip)
		}
		return nil, nil
	}
	terms := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	var names sets.Set[string]
	for _, t := range terms {
		var termNames sets.Set[string]
		for _, f := range t.MatchFields {
			if f.Key == "metadata.name" && f.Operator == corev1.NodeSelectorOpIn {
				s := sets.New(f.Values...)
				if termNames == nil {
					termNames = s
				} else {
					termNames = termNames.Intersection(s)
				}
			}
		}
		if termNames == nil {
			return nil, nil // a term without a name restriction: any node
		}
		if names == nil {
			names = termNames
		} else {
			names = names.Union(termNames)
		}
	}
	if names == nil {
		return nil, nil
	}
	if names.Len() == 0 {
		return nil, framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonPod)
	}
	return &framework.PreFilterResult{NodeNames: names}, nil
}

// PreFilterExtensions implements framework.PreFilterPlugin.
func (*NodeAffinity) PreFilterExtensions() framework.PreFilterExtensions { return nil }

// Filter implements framework.FilterPlugin.
func (p *NodeAffinity) Filter(_ context.Context, _ *framework.CycleState, pod *corev1.Pod, ni *framework.NodeInfo) *framework.Status {
	node := ni.Node()
	if p.added != nil && p.added.RequiredDuringSchedulingIgnoredDuringExecution != nil &&
		!framework.NodeSelectorMatches(p.added.RequiredDuringSchedulingIgnoredDuringExecution, node) {
		return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonEnforced)
	}
	if !framework.PodMatchesNodeSelectorAndAffinity(pod, node) {
		return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonPod)
	}
	return nil
}

type preferred struct {
	terms []corev1.PreferredSchedulingTerm
}

func (s *preferred) Clone() framework.StateData { return s }

// PreScore implements framework.PreScorePlugin.
func (p *NodeAffinity) PreScore(_ context.Context, state *framework.CycleState, pod *corev1.Pod, _ []*framework.NodeInfo) *framework.Status {
	var terms []corev1.PreferredSchedulingTerm
	if p.added != nil {
		terms = append(terms, p.added.PreferredDuringSchedulingIgnoredDuringExecution...)
	}
	if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil {
		terms = append(terms, a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution...)
	}
	if len(terms) == 0 {
		return framework.NewStatus(framework.Skip)
	}
	state.Write(preScoreKey, &preferred{terms: terms})
	return nil
}

// Score implements framework.ScorePlugin: the sum of the weights of the
// preferred terms the node matches.
func (p *NodeAffinity) Score(_ context.Context, state *framework.CycleState, _ *corev1.Pod, ni *framework.NodeInfo) (int64, *framework.Status) {
	d, err := state.Read(preScoreKey)
	if err != nil {
		return 0, framework.AsStatus(fmt.Errorf("reading %q from cycleState: %w", preScoreKey, err))
	}
	var score int64
	for i, t := range d.(*preferred).terms {
		if t.Weight != 0 && framework.NodeSelectorTermMatches(&d.(*preferred).terms[i].Preference, ni.Node()) {
			score += int64(t.Weight)
		}
	}
	return score, nil
}

// ScoreExtensions implements framework.ScorePlugin.
func (p *NodeAffinity) ScoreExtensions() framework.ScoreExtensions { return p }

// NormalizeScore implements framework.ScoreExtensions.
func (*NodeAffinity) NormalizeScore(_ context.Context, _ *framework.CycleState, _ *corev1.Pod, scores framework.NodeScoreList) *framework.Status {
	return framework.DefaultNormalizeScore(framework.MaxNodeScore, false, scores)
}
