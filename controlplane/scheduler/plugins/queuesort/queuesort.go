// Package queuesort is the PrioritySort plugin: the scheduling queue pops
// higher-priority pods first and, among equals, the longest waiting.
package queuesort

import (
	"encoding/json"

	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
)

// Name of the plugin.
const Name = "PrioritySort"

func init() { framework.Register(Name, New) }

// PrioritySort orders pods by priority, then queue time.
type PrioritySort struct{ h framework.Handle }

var _ framework.QueueSortPlugin = (*PrioritySort)(nil)

// New builds the plugin.
func New(_ json.RawMessage, h framework.Handle) (framework.Plugin, error) {
	return &PrioritySort{h: h}, nil
}

// Name implements framework.Plugin.
func (*PrioritySort) Name() string { return Name }

// Less implements framework.QueueSortPlugin.
func (p *PrioritySort) Less(a, b *framework.QueuedPodInfo) bool {
	pa, pb := p.h.PodPriority(a.Pod), p.h.PodPriority(b.Pod)
	return pa > pb || (pa == pb && a.Timestamp.Before(b.Timestamp))
}
