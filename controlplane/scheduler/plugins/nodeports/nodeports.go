// Package nodeports is the NodePorts plugin: a pod asking for host ports
// fits only nodes where those ports (per IP and protocol) are free.
package nodeports

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
)

// Name of the plugin; ErrReason its rejection.
const (
	Name      = "NodePorts"
	ErrReason = "node(s) didn't have free ports for the requested pod ports"
)

const stateKey = "PreFilter" + Name

func init() { framework.Register(Name, New) }

// NodePorts filters by host port conflicts.
type NodePorts struct{}

var (
	_ framework.PreFilterPlugin   = NodePorts{}
	_ framework.FilterPlugin      = NodePorts{}
	_ framework.EnqueueExtensions = NodePorts{}
)

// New builds the plugin.
func New(json.RawMessage, framework.Handle) (framework.Plugin, error) { return NodePorts{}, nil }

// Name implements framework.Plugin.
func (NodePorts) Name() string { return Name }

// EventsToRegister implements framework.EnqueueExtensions.
func (NodePorts) EventsToRegister() []framework.ClusterEvent {
	return []framework.ClusterEvent{framework.EventNodeAdd, framework.EventAssignedPodDelete}
}

type ports []corev1.ContainerPort

func (p ports) Clone() framework.StateData { return p }

// HostPorts lists the host ports pod asks for (containers and sidecars).
func HostPorts(pod *corev1.Pod) []corev1.ContainerPort {
	var out []corev1.ContainerPort
	for i := range pod.Spec.Containers {
		for _, p := range pod.Spec.Containers[i].Ports {
			if p.HostPort > 0 {
				out = append(out, p)
			}
		}
	}
	for i := range pod.Spec.InitContainers {
		ic := &pod.Spec.InitContainers[i]
		if ic.RestartPolicy == nil || *ic.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			continue
		}
		for _, p := range ic.Ports {
			if p.HostPort > 0 {
				out = append(out, p)
			}
		}
	}
	return out
}

// PreFilter implements framework.PreFilterPlugin.
func (NodePorts) PreFilter(_ context.Context, state *framework.CycleState, pod *corev1.Pod) (*framework.PreFilterResult, *framework.Status) {
	p := HostPorts(pod)
	if len(p) == 0 {
		return nil, framework.NewStatus(framework.Skip)
	}
	state.Write(stateKey, ports(p))
	return nil, nil
}

// PreFilterExtensions implements framework.PreFilterPlugin.
func (NodePorts) PreFilterExtensions() framework.PreFilterExtensions { return nil }

// Filter implements framework.FilterPlugin.
func (NodePorts) Filter(_ context.Context, state *framework.CycleState, _ *corev1.Pod, ni *framework.NodeInfo) *framework.Status {
	d, err := state.Read(stateKey)
	if err != nil {
		return framework.AsStatus(fmt.Errorf("reading %q from cycleState: %w", stateKey, err))
	}
	for _, p := range d.(ports) {
		if ni.UsedPorts.CheckConflict(p.HostIP, string(p.Protocol), p.HostPort) {
			return framework.NewStatus(framework.Unschedulable, ErrReason)
		}
	}
	return nil
}
