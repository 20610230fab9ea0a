// Package nodename is the NodeName plugin: a pod that names a node in
// spec.nodeName fits only that node.
package nodename

import (
	"context"
	"encoding/json"

	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
)

// Name of the plugin; ErrReason its rejection.
const (
	Name      = "NodeName"
	ErrReason = "node(s) didn't match the requested node name"
)

func init() { framework.Register(Name, New) }

// NodeName filters by spec.nodeName.
type NodeName struct{}

var (
	_ framework.FilterPlugin      = NodeName{}
	_ framework.EnqueueExtensions = NodeName{}
)

// New builds the plugin.
func New(json.RawMessage, framework.Handle) (framework.Plugin, error) { return NodeName{}, nil }

// Name implements framework.Plugin.
func (NodeName) Name() string { return Name }

// EventsToRegister implements framework.EnqueueExtensions.
func (NodeName) EventsToRegister() []framework.ClusterEvent {
	return []framework.ClusterEvent{framework.EventNodeAdd}
}

// Filter implements framework.FilterPlugin.
func (NodeName) Filter(_ context.Context, _ *framework.CycleState, pod *corev1.Pod, ni *framework.NodeInfo) *framework.Status {
	if pod.Spec.NodeName != "" && pod.Spec.NodeName != ni.Node().Name {
		return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReason)
	}
	return nil
}
