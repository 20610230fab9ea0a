package runtime

import (
	"context"
	"fmt"

	containerd "github.com/containerd/containerd/v2/client"
)

// ContainerLabels lists the labels of every container in the namespace,
// by container ID: one call to containerd and none to the shims, where
// List describes each container's task (three calls each).
func (r *Runtime) ContainerLabels(ctx context.Context) (map[string]map[string]string, error) {
	cs, err := r.client.Containers(r.ctx(ctx))
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make(map[string]map[string]string, len(cs))
	for _, c := range cs {
		info, err := c.Info(ctx, containerd.WithoutRefreshedMetadata)
		if err != nil {
			return nil, fmt.Errorf("container %s: %w", c.ID(), err)
		}
		out[c.ID()] = info.Labels
	}
	return out, nil
}
