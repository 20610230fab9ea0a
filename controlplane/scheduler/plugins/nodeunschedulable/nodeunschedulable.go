// Package nodeunschedulable is the NodeUnschedulable plugin: cordoned
// nodes (spec.unschedulable) take only pods tolerating the
// node.kubernetes.io/unschedulable:NoSchedule taint.
package nodeunschedulable

import (
	"context"
	"encoding/json"

	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
)

// Name of the plugin; ErrReason its rejection.
const (
	Name      = "NodeUnschedulable"
	ErrReason = "node(s) were unschedulable"
)

func init() { framework.Register(Name, New) }

// NodeUnschedulable filters cordoned nodes.
type NodeUnschedulable struct{}

var (
	_ framework.FilterPlugin      = NodeUnschedulable{}
	_ framework.EnqueueExtensions = NodeUnschedulable{}
)

// New builds the plugin.
func New(json.RawMessage, framework.Handle) (framework.Plugin, error) {
	return NodeUnschedulable{}, nil
}

// Name implements framework.Plugin.
func (NodeUnschedulable) Name() string { return Name }

// EventsToRegister implements framework.EnqueueExtensions.
func (NodeUnschedulable) EventsToRegister() []framework.ClusterEvent {
	return []framework.ClusterEvent{framework.EventNodeAdd, framework.EventNodeUpdate}
}

// Filter implements framework.FilterPlugin.
func (NodeUnschedulable) Filter(_ context.Context, _ *framework.CycleState, pod *corev1.Pod, ni *framework.NodeInfo) *framework.Status {
	if !ni.Node().Spec.Unschedulable {
		return nil
	}
	taint := corev1.Taint{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule}
	for i := range pod.Spec.Tolerations {
		if framework.Tolerates(&pod.Spec.Tolerations[i], &taint) {
			return nil
		}
	}
	return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReason)
}
