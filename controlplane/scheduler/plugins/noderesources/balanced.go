package noderesources

import (
	"context"
	"encoding/json"
	"math"

	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
)

// BalancedArgs are NodeResourcesBalancedAllocation's args.
type BalancedArgs struct {
	Resources []ResourceSpec `json:"resources,omitempty"`
}

// Balanced is the NodeResourcesBalancedAllocation plugin: the score is
// (1 - standard deviation of the requested/allocatable fractions) * 100.
type Balanced struct {
	resources []ResourceSpec
}

var _ framework.ScorePlugin = (*Balanced)(nil)

// NewBalanced builds NodeResourcesBalancedAllocation.
func NewBalanced(raw json.RawMessage, _ framework.Handle) (framework.Plugin, error) {
	var a BalancedArgs
	if err := framework.DecodeArgs(raw, &a); err != nil {
		return nil, err
	}
	if len(a.Resources) == 0 {
		a.Resources = defaultResources
	}
	return &Balanced{resources: a.Resources}, nil
}

// Name implements framework.Plugin.
func (*Balanced) Name() string { return BalancedName }

// Score implements framework.ScorePlugin.
func (b *Balanced) Score(_ context.Context, _ *framework.CycleState, pod *corev1.Pod, ni *framework.NodeInfo) (int64, *framework.Status) {
	return b.score(pod, ni), nil
}

func (b *Balanced) score(pod *corev1.Pod, ni *framework.NodeInfo) int64 {
	var fractions []float64
	for _, r := range b.resources {
		requested, alloc := requestedAndAllocatable(pod, ni, r.Name)
		if alloc == 0 {
			continue
		}
		fractions = append(fractions, math.Min(float64(requested)/float64(alloc), 1))
	}
	var std float64
	switch len(fractions) {
	case 0, 1:
	case 2:
		std = math.Abs(fractions[0]-fractions[1]) / 2
	default:
		var mean float64
		for _, f := range fractions {
			mean += f
		}
		mean /= float64(len(fractions))
		for _, f := range fractions {
			std += (f - mean) * (f - mean)
		}
		std = math.Sqrt(std / float64(len(fractions)))
	}
	return int64((1 - std) * float64(framework.MaxNodeScore))
}

// ScoreExtensions implements framework.ScorePlugin.
func (*Balanced) ScoreExtensions() framework.ScoreExtensions { return nil }
