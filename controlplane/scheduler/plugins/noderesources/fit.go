// Package noderesources holds the NodeResourcesFit plugin (a pod fits nodes
// with enough allocatable resources left: CPU, memory, ephemeral storage,
// pods and extended resources, counting init containers, sidecars and pod
// overhead; nodes are scored LeastAllocated, MostAllocated or
// RequestedToCapacityRatio) and the NodeResourcesBalancedAllocation plugin
// (prefers nodes whose resource usage stays balanced).
package noderesources

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
)

// Names of the plugins.
const (
	FitName      = "NodeResourcesFit"
	BalancedName = "NodeResourcesBalancedAllocation"
)

// Scoring strategies.
const (
	LeastAllocated           = "LeastAllocated"
	MostAllocated            = "MostAllocated"
	RequestedToCapacityRatio = "RequestedToCapacityRatio"
)

const fitStateKey = "PreFilter" + FitName

func init() {
	framework.Register(FitName, NewFit)
	framework.Register(BalancedName, NewBalanced)
}

// ResourceSpec names a resource and its weight in scoring.
type ResourceSpec struct {
	Name   string `json:"name"`
	Weight int64  `json:"weight,omitempty"`
}

// UtilizationShapePoint is a point of the RequestedToCapacityRatio curve:
// utilization 0-100 maps to score 0-10.
type UtilizationShapePoint struct {
	Utilization int32 `json:"utilization"`
	Score       int32 `json:"score"`
}

// ScoringStrategy is NodeResourcesFitArgs.scoringStrategy.
type ScoringStrategy struct {
	Type                     string         `json:"type,omitempty"`
	Resources                []ResourceSpec `json:"resources,omitempty"`
	RequestedToCapacityRatio *struct {
		Shape []UtilizationShapePoint `json:"shape,omitempty"`
	} `json:"requestedToCapacityRatio,omitempty"`
}

// FitArgs are NodeResourcesFit's args.
type FitArgs struct {
	IgnoredResources      []string         `json:"ignoredResources,omitempty"`
	IgnoredResourceGroups []string         `json:"ignoredResourceGroups,omitempty"`
	ScoringStrategy       *ScoringStrategy `json:"scoringStrategy,omitempty"`
}

var defaultResources = []ResourceSpec{{Name: "cpu", Weight: 1}, {Name: "memory", Weight: 1}}

// Fit is the NodeResourcesFit plugin.
type Fit struct {
	ignored       sets.Set[string]
	ignoredGroups sets.Set[string]
	strategy      string
	resources     []ResourceSpec
	shape         []UtilizationShapePoint
}

var (
	_ framework.PreFilterPlugin   = (*Fit)(nil)
	_ framework.FilterPlugin      = (*Fit)(nil)
	_ framework.ScorePlugin       = (*Fit)(nil)
	_ framework.EnqueueExtensions = (*Fit)(nil)
)

// NewFit builds NodeResourcesFit.
func NewFit(raw json.RawMessage, _ framework.Handle) (framework.Plugin, error) {
	var a FitArgs
	if err := framework.DecodeArgs(raw, &a); err != nil {
		return nil, err
	}
	f := &Fit{ignored: sets.New(a.IgnoredResources...), ignoredGroups: sets.New(a.IgnoredResourceGroups...), strategy: LeastAllocated, resources: defaultResources}
	if s := a.ScoringStrategy; s != nil {
		if s.Type != "" {
			f.strategy = s.Type
		}
		if len(s.Resources) > 0 {
			f.resources = s.Resources
		}
		if s.RequestedToCapacityRatio != nil {
			f.shape = s.RequestedToCapacityRatio.Shape
		}
	}
	switch f.strategy {
	case LeastAllocated, MostAllocated:
	case RequestedToCapacityRatio:
		if len(f.shape) == 0 {
			return nil, fmt.Errorf("scoringStrategy.requestedToCapacityRatio.shape: Required value")
		}
		for i, p := range f.shape {
			if p.Utilization < 0 || p.Utilization > 100 || p.Score < 0 || p.Score > 10 {
				return nil, fmt.Errorf("scoringStrategy.requestedToCapacityRatio.shape[%d]: utilization must be in [0, 100] and score in [0, 10]", i)
			}
			if i > 0 && p.Utilization <= f.shape[i-1].Utilization {
				return nil, fmt.Errorf("scoringStrategy.requestedToCapacityRatio.shape[%d].utilization: Invalid value: %d: utilization values must be sorted in increasing order", i, p.Utilization)
			}
		}
	default:
		return nil, fmt.Errorf("scoringStrategy.type: Unsupported value: %q: supported values: %q, %q, %q", f.strategy, LeastAllocated, MostAllocated, RequestedToCapacityRatio)
	}
	for i, r := range f.resources {
		if r.Weight <= 0 || r.Weight > 100 {
			return nil, fmt.Errorf("scoringStrategy.resources[%d].weight: Invalid value: %d: resource weight of %s should be in the range [1, 100]", i, r.Weight, r.Name)
		}
	}
	return f, nil
}

// Name implements framework.Plugin.
func (*Fit) Name() string { return FitName }

// EventsToRegister implements framework.EnqueueExtensions.
func (*Fit) EventsToRegister() []framework.ClusterEvent {
	return []framework.ClusterEvent{framework.EventNodeAdd, framework.EventNodeUpdate, framework.EventAssignedPodDelete}
}

type fitState struct{ req *framework.Resource }

func (s *fitState) Clone() framework.StateData { return s }

// PreFilter implements framework.PreFilterPlugin.
func (f *Fit) PreFilter(_ context.Context, state *framework.CycleState, pod *corev1.Pod) (*framework.PreFilterResult, *framework.Status) {
	state.Write(fitStateKey, &fitState{req: framework.PodRequests(pod)})
	return nil, nil
}

// PreFilterExtensions implements framework.PreFilterPlugin.
func (*Fit) PreFilterExtensions() framework.PreFilterExtensions { return nil }

// InsufficientResource describes one shortfall.
type InsufficientResource struct {
	Name      corev1.ResourceName
	Reason    string
	Requested int64
	Used      int64
	Capacity  int64
}

// Filter implements framework.FilterPlugin.
func (f *Fit) Filter(_ context.Context, state *framework.CycleState, pod *corev1.Pod, ni *framework.NodeInfo) *framework.Status {
	var req *framework.Resource
	if d, err := state.Read(fitStateKey); err == nil {
		req = d.(*fitState).req
	} else {
		req = framework.PodRequests(pod)
	}
	insufficient := Fits(req, ni, f.ignored, f.ignoredGroups)
	if len(insufficient) == 0 {
		return nil
	}
	reasons := make([]string, len(insufficient))
	for i, r := range insufficient {
		reasons[i] = r.Reason
	}
	return framework.NewStatus(framework.Unschedulable, reasons...)
}

// Fits lists what req lacks on ni (empty: it fits).
func Fits(req *framework.Resource, ni *framework.NodeInfo, ignored, ignoredGroups sets.Set[string]) []InsufficientResource {
	var out []InsufficientResource
	alloc, used := ni.Allocatable, ni.Requested
	if len(ni.Pods)+1 > alloc.AllowedPodNumber {
		out = append(out, InsufficientResource{Name: corev1.ResourcePods, Reason: "Too many pods", Requested: 1, Used: int64(len(ni.Pods)), Capacity: int64(alloc.AllowedPodNumber)})
	}
	if req.MilliCPU == 0 && req.Memory == 0 && req.EphemeralStorage == 0 && len(req.ScalarResources) == 0 {
		return out
	}
	if req.MilliCPU > 0 && req.MilliCPU > alloc.MilliCPU-used.MilliCPU {
		out = append(out, InsufficientResource{Name: corev1.ResourceCPU, Reason: "Insufficient cpu", Requested: req.MilliCPU, Used: used.MilliCPU, Capacity: alloc.MilliCPU})
	}
	if req.Memory > 0 && req.Memory > alloc.Memory-used.Memory {
		out = append(out, InsufficientResource{Name: corev1.ResourceMemory, Reason: "Insufficient memory", Requested: req.Memory, Used: used.Memory, Capacity: alloc.Memory})
	}
	if req.EphemeralStorage > 0 && req.EphemeralStorage > alloc.EphemeralStorage-used.EphemeralStorage {
		out = append(out, InsufficientResource{Name: corev1.ResourceEphemeralStorage, Reason: "Insufficient ephemeral-storage", Requested: req.EphemeralStorage, Used: used.EphemeralStorage, Capacity: alloc.EphemeralStorage})
	}
	for name, q := range req.ScalarResources {
		if q == 0 {
			continue
		}
		if framework.IsExtendedResourceName(name) {
			if ignored.Has(string(name)) {
				continue
			}
			if prefix, _, ok := strings.Cut(string(name), "/"); ok && ignoredGroups.Has(prefix) {
				continue
			}
		}
		if q > alloc.ScalarResources[name]-used.ScalarResources[name] {
			out = append(out, InsufficientResource{Name: name, Reason: "Insufficient " + string(name), Requested: q, Used: used.ScalarResources[name], Capacity: alloc.ScalarResources[name]})
		}
	}
	return out
}

// requestedAndAllocatable returns what the node would have requested with
// the pod added (CPU and memory with non-zero defaults), and its allocatable.
func requestedAndAllocatable(pod *corev1.Pod, ni *framework.NodeInfo, name string) (int64, int64) {
	rn := corev1.ResourceName(name)
	switch rn {
	case corev1.ResourceCPU:
		c, _ := framework.NonZeroRequests(pod)
		return ni.NonZeroRequested.MilliCPU + c, ni.Allocatable.MilliCPU
	case corev1.ResourceMemory:
		_, m := framework.NonZeroRequests(pod)
		return ni.NonZeroRequested.Memory + m, ni.Allocatable.Memory
	}
	req := framework.PodRequests(pod)
	return ni.Requested.Get(rn) + req.Get(rn), ni.Allocatable.Get(rn)
}

// Score implements framework.ScorePlugin.
func (f *Fit) Score(_ context.Context, _ *framework.CycleState, pod *corev1.Pod, ni *framework.NodeInfo) (int64, *framework.Status) {
	return f.score(pod, ni), nil
}

func (f *Fit) score(pod *corev1.Pod, ni *framework.NodeInfo) int64 {
	var sum, weights int64
	for _, r := range f.resources {
		requested, alloc := requestedAndAllocatable(pod, ni, r.Name)
		if alloc == 0 && r.Name != "cpu" && r.Name != "memory" {
			continue
		}
		var s int64
		switch f.strategy {
		case LeastAllocated:
			if alloc != 0 && requested <= alloc {
				s = (alloc - requested) * framework.MaxNodeScore / alloc
			}
		case MostAllocated:
			if alloc != 0 {
				s = min(requested, alloc) * framework.MaxNodeScore / alloc
			}
		case RequestedToCapacityRatio:
			util := int64(100)
			if alloc != 0 {
				util = min(requested*100/alloc, 100)
			}
			s = shapeScore(f.shape, util)
		}
		sum += s * r.Weight
		weights += r.Weight
	}
	if weights == 0 {
		return 0
	}
	return sum / weights
}

// shapeScore evaluates the piecewise linear curve at utilization (0-100),
// scaling scores 0-10 to 0-100.
func shapeScore(shape []UtilizationShapePoint, util int64) int64 {
	scale := framework.MaxNodeScore / 10
	if util <= int64(shape[0].Utilization) {
		return int64(shape[0].Score) * scale
	}
	for i := 1; i < len(shape); i++ {
		p0, p1 := shape[i-1], shape[i]
		if util <= int64(p1.Utilization) {
			s0, s1 := int64(p0.Score)*scale, int64(p1.Score)*scale
			return s0 + (s1-s0)*(util-int64(p0.Utilization))/int64(p1.Utilization-p0.Utilization)
		}
	}
	return int64(shape[len(shape)-1].Score) * scale
}

// ScoreExtensions implements framework.ScorePlugin.
func (*Fit) ScoreExtensions() framework.ScoreExtensions { return nil }
