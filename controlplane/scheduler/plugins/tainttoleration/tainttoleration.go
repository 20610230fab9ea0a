// Package tainttoleration is the TaintToleration plugin: a pod fits a node
// only if it tolerates the node's NoSchedule and NoExecute taints, and it
// prefers nodes with fewer untolerated PreferNoSchedule taints.
package tainttoleration

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
)

// Name of the plugin.
const Name = "TaintToleration"

const stateKey = "PreScore" + Name

func init() { framework.Register(Name, New) }

// TaintToleration filters and scores by taints.
type TaintToleration struct{}

var (
	_ framework.FilterPlugin      = TaintToleration{}
	_ framework.PreScorePlugin    = TaintToleration{}
	_ framework.ScorePlugin       = TaintToleration{}
	_ framework.EnqueueExtensions = TaintToleration{}
)

// New builds the plugin.
func New(json.RawMessage, framework.Handle) (framework.Plugin, error) {
	return TaintToleration{}, nil
}

// Name implements framework.Plugin.
func (TaintToleration) Name() string { return Name }

// EventsToRegister implements framework.EnqueueExtensions.
func (TaintToleration) EventsToRegister() []framework.ClusterEvent {
	return []framework.ClusterEvent{framework.EventNodeAdd, framework.EventNodeUpdate}
}

// Filter implements framework.FilterPlugin.
func (TaintToleration) Filter(_ context.Context, _ *framework.CycleState, pod *corev1.Pod, ni *framework.NodeInfo) *framework.Status {
	t, found := framework.FindUntoleratedTaint(ni.Node().Spec.Taints, pod.Spec.Tolerations, corev1.TaintEffectNoSchedule, corev1.TaintEffectNoExecute)
	if !found {
		return nil
	}
	return framework.NewStatus(framework.UnschedulableAndUnresolvable, fmt.Sprintf("node(s) had untolerated taint {%s: %s}", t.Key, t.Value))
}

type preScoreState struct{ tolerations []corev1.Toleration }

func (s *preScoreState) Clone() framework.StateData { return s }

// PreScore implements framework.PreScorePlugin: it keeps the tolerations
// that can tolerate PreferNoSchedule taints.
func (TaintToleration) PreScore(_ context.Context, state *framework.CycleState, pod *corev1.Pod, _ []*framework.NodeInfo) *framework.Status {
	var tol []corev1.Toleration
	for _, t := range pod.Spec.Tolerations {
		if t.Effect == "" || t.Effect == corev1.TaintEffectPreferNoSchedule {
			tol = append(tol, t)
		}
	}
	state.Write(stateKey, &preScoreState{tolerations: tol})
	return nil
}

// Score implements framework.ScorePlugin: the count of untolerated
// PreferNoSchedule taints (reversed by NormalizeScore).
func (TaintToleration) Score(_ context.Context, state *framework.CycleState, _ *corev1.Pod, ni *framework.NodeInfo) (int64, *framework.Status) {
	d, err := state.Read(stateKey)
	if err != nil {
		return 0, framework.AsStatus(fmt.Errorf("reading %q from cycleState: %w", stateKey, err))
	}
	tol := d.(*preScoreState).tolerations
	var n int64
	for i := range ni.Node().Spec.Taints {
		t := &ni.Node().Spec.Taints[i]
		if t.Effect != corev1.TaintEffectPreferNoSchedule {
			continue
		}
		ok := false
		for j := range tol {
			if framework.Tolerates(&tol[j], t) {
				ok = true
				break
			}
		}
		if !ok {
			n++
		}
	}
	return n, nil
}

// ScoreExtensions implements framework.ScorePlugin.
func (p TaintToleration) ScoreExtensions() framework.ScoreExtensions { return p }

// NormalizeScore implements framework.ScoreExtensions.
func (TaintToleration) NormalizeScore(_ context.Context, _ *framework.CycleState, _ *corev1.Pod, scores framework.NodeScoreList) *framework.Status {
	return framework.DefaultNormalizeScore(framework.MaxNodeScore, true, scores)
}
