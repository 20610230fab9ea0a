// Package imagelocality is the ImageLocality plugin: it prefers nodes that
// already have the pod's images, weighing each image by its size and by how
// widely it is spread over the cluster (to avoid piling pods on the one node
// that has it).
package imagelocality

import (
	"context"
	"encoding/json"

	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
)

// Name of the plugin.
const Name = "ImageLocality"

// Thresholds, as upstream: below minThreshold the score is 0; above
// maxContainerThreshold per container it is 100.
const (
	mb                    int64 = 1024 * 1024
	minThreshold                = 23 * mb
	maxContainerThreshold       = 1000 * mb
)

func init() { framework.Register(Name, New) }

// ImageLocality scores by images present on nodes.
type ImageLocality struct{ h framework.Handle }

var _ framework.ScorePlugin = (*ImageLocality)(nil)

// New builds the plugin.
func New(_ json.RawMessage, h framework.Handle) (framework.Plugin, error) {
	return &ImageLocality{h: h}, nil
}

// Name implements framework.Plugin.
func (*ImageLocality) Name() string { return Name }

// Score implements framework.ScorePlugin.
func (p *ImageLocality) Score(_ context.Context, _ *framework.CycleState, pod *corev1.Pod, ni *framework.NodeInfo) (int64, *framework.Status) {
	total := len(p.h.SnapshotSharedLister().List())
	return Score(pod, ni, total), nil
}

// Score computes the plugin's score of ni for pod in a cluster of total nodes.
func Score(pod *corev1.Pod, ni *framework.NodeInfo, total int) int64 {
	if total == 0 || len(ni.ImageStates) == 0 {
		return 0
	}
	var sum int64
	containers := 0
	add := func(cs []corev1.Container) {
		for i := range cs {
			containers++
			if st, ok := ni.ImageStates[framework.NormalizedImageName(cs[i].Image)]; ok {
				sum += int64(float64(st.Size) * float64(st.NumNodes) / float64(total))
			}
		}
	}
	add(pod.Spec.InitContainers)
	add(pod.Spec.Containers)
	maxThreshold := maxContainerThreshold * int64(containers)
	switch {
	case sum < minThreshold:
		sum = minThreshold
	case sum > maxThreshold:
		sum = maxThreshold
	}
	return framework.MaxNodeScore * (sum - minThreshold) / (maxThreshold - minThreshold)
}

// ScoreExtensions implements framework.ScorePlugin.
func (*ImageLocality) ScoreExtensions() framework.ScoreExtensions { return nil }
