package runtime

import (
	"context"
	"fmt"
	"strings"
	"time"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
)

// ContainerStats is one sample of a running container's cgroup, read
// through containerd's task Metrics API (cgroup v1 or v2 stats).
type ContainerStats struct {
	Time time.Time
	// CPUUsageNanos is the cumulative CPU time used (user + system).
	CPUUsageNanos uint64
	// MemoryUsage is the cgroup's memory usage; MemoryWorkingSet is usage
	// minus inactive file pages (cAdvisor's and the kubelet's definition);
	// MemoryRSS is anonymous memory.
	MemoryUsage, MemoryWorkingSet, MemoryRSS uint64
	PageFaults, MajorPageFaults              uint64
}

// Stats samples container id's cgroup. A container without a task answers
// ErrContainerNotFound.
func (r *Runtime) Stats(ctx context.Context, id string) (ContainerStats, error) {
	ctx = r.ctx(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return ContainerStats{}, fmt.Errorf("%s: %w", id, ErrContainerNotFound)
		}
		return ContainerStats{}, fmt.Errorf("load container %s: %w", id, err)
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return ContainerStats{}, fmt.Errorf("%s has no task: %w", id, ErrContainerNotFound)
		}
		return ContainerStats{}, fmt.Errorf("task of %s: %w", id, err)
	}
	m, err := task.Metrics(ctx)
	if err != nil {
		return ContainerStats{}, fmt.Errorf("metrics of %s: %w", id, err)
	}
	st := ContainerStats{Time: time.Now()}
	if ts := m.GetTimestamp(); ts != nil {
		st.Time = ts.AsTime()
	}
	if m.GetData() == nil {
		return st, fmt.Errorf("metrics of %s: no data", id)
	}
	if err := decodeCgroupStats(m.GetData().GetTypeUrl(), m.GetData().GetValue(), &st); err != nil {
		return st, fmt.Errorf("metrics of %s: %w", id, err)
	}
	return st, nil
}

// decodeCgroupStats fills st from containerd's cgroup v1 or v2 metrics
// message.
func decodeCgroupStats(typeURL string, data []byte, st *ContainerStats) error {
	switch {
	case strings.HasSuffix(typeURL, "io.containerd.cgroups.v1.Metrics"):
		var m v1.Metrics
		if err := proto.Unmarshal(data, &m); err != nil {
			return fmt.Errorf("decode cgroup v1 stats: %w", err)
		}
		st.CPUUsageNanos = m.GetCPU().GetUsage().GetTotal()
		mem := m.GetMemory()
		st.MemoryUsage = mem.GetUsage().GetUsage()
		st.MemoryWorkingSet = workingSet(st.MemoryUsage, mem.GetTotalInactiveFile())
		st.MemoryRSS = mem.GetTotalRSS()
		st.PageFaults, st.MajorPageFaults = mem.GetTotalPgFault(), mem.GetTotalPgMajFault()
	case strings.HasSuffix(typeURL, "io.containerd.cgroups.v2.Metrics"):
		var m v2.Metrics
		if err := proto.Unmarshal(data, &m); err != nil {
			return fmt.Errorf("decode cgroup v2 stats: %w", err)
		}
		st.CPUUsageNanos = m.GetCPU().GetUsageUsec() * 1000
		mem := m.GetMemory()
		st.MemoryUsage = mem.GetUsage()
		st.MemoryWorkingSet = workingSet(st.MemoryUsage, mem.GetInactiveFile())
		st.MemoryRSS = mem.GetAnon()
		st.PageFaults, st.MajorPageFaults = mem.GetPgfault(), mem.GetPgmajfault()
	default:
		return fmt.Errorf("unknown metrics type %q", typeURL)
	}
	return nil
}

func workingSet(usage, inactiveFile uint64) uint64 {
	if inactiveFile >= usage {
		return 0
	}
	return usage - inactiveFile
}
