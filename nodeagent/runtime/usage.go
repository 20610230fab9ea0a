package runtime

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
)

// WritableLayerUsage is the disk space (bytes) and inodes the container's
// writable layer uses, as its snapshotter counts them: upstream's
// container rootfs usage (the CRI's WritableLayer).
func (r *Runtime) WritableLayerUsage(ctx context.Context, id string) (bytes, inodes uint64, err error) {
	ctx = r.ctx(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return 0, 0, fmt.Errorf("%s: %w", id, ErrContainerNotFound)
		}
		return 0, 0, fmt.Errorf("load container %s: %w", id, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("container %s: %w", id, err)
	}
	if info.SnapshotKey == "" {
		return 0, 0, nil
	}
	u, err := r.client.SnapshotService(info.Snapshotter).Usage(ctx, info.SnapshotKey)
	if err != nil {
		return 0, 0, fmt.Errorf("usage of %s's writable layer: %w", id, err)
	}
	return uint64(max(0, u.Size)), uint64(max(0, u.Inodes)), nil
}
