package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/skiffhq/skiff/nodeagent/runtime"
	"github.com/skiffhq/skiff/nodeagent/stats"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// containerdRoot is where containerd keeps images and snapshots (the
// runtime's image filesystem).
const containerdRoot = "/var/lib/containerd"

// summaryState is what /stats/summary keeps between calls: the node
// sampler and the previous cumulative CPU samples rates are derived from.
// Its zero value is ready to use.
type summaryState struct {
	once   sync.Once
	node   *stats.NodeSampler
	rates  stats.Rates
	mu     sync.Mutex  // one summary at a time: rates need ordered samples
	claims claimMounts // where pods' claims are mounted (volstats.go)
	du     duCache     // disk usage of volumes (du.go; walked by heartbeat's goroutine)
}

// serveStatsSummary is the kubelet's GET /stats/summary (Summary API
// v1alpha1); ?only_cpu_and_memory=true leaves out network and
// filesystems, as upstream.
func (a *Agent) serveStatsSummary(w http.ResponseWriter, r *http.Request) {
	only, _ := strconv.ParseBool(r.URL.Query().Get("only_cpu_and_memory"))
	sum, err := a.Summary(r.Context(), only)
	if err != nil {
		writeErr(w, apierrors.NewInternalError(err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(sum)
}

// Summary samples the node and every running container of this node's
// pods (cgroup stats through containerd's task Metrics).
func (a *Agent) Summary(ctx context.Context, onlyCPUAndMemory bool) (*statsv1alpha1.Summary, error) {
	st := &a.summary
	st.once.Do(func() {
		st.node = &stats.NodeSampler{NodeFsPath: a.opts.StateDir}
		if _, err := os.Stat(containerdRoot); err == nil {
			st.node.ImageFsPath = containerdRoot
		}
	})
	st.mu.Lock()
	defer st.mu.Unlock()
	now := time.Now()
	node, err := st.node.Sample(a.opts.NodeName, now)
	if err != nil {
		return nil, fmt.Errorf("node stats: %w", err)
	}
	if onlyCPUAndMemory {
		node.Network, node.Fs, node.Runtime = nil, nil, nil
	}
	if rs := node.Runtime; rs != nil && rs.ImageFs != nil && a.imageGC != nil {
		// imageFs.usedBytes is the bytes of the images (their content, as
		// the image GC last listed them), as the CRI reports it; capacity
		// and available stay the filesystem's. containerFs keeps statfs.
		if b := a.imageGC.imagesBytes(); b >= 0 {
			fs := *rs.ImageFs
			fs.UsedBytes = ptrTo(uint64(b))
			rs.ImageFs = &fs
		}
	}
	all, err := a.rt.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	byPod := map[string][]runtime.Container{}
	for _, c := range all {
		if c.State == runtime.StateRunning && a.ours(c) {
			uid := c.Labels[runtime.LabelPodUID]
			byPod[uid] = append(byPod[uid], c)
		}
	}
	sum := &statsv1alpha1.Summary{Node: node, Pods: []statsv1alpha1.PodStats{}}
	for uid, ctrs := range byPod {
		obj, ok := a.podObjectByUID(uid)
		if !ok {
			continue
		}
		ps := a.podStats(ctx, obj, ctrs, onlyCPUAndMemory)
		sum.Pods = append(sum.Pods, ps)
	}
	st.rates.Prune()
	st.claims.prune(func(uid string) bool { _, ok := a.podObjectByUID(uid); return ok })
	return sum, nil
}

func (a *Agent) podObjectByUID(uid string) (*corev1.Pod, bool) {
	objs, err := a.pods.ByIndex(uidIndex, uid)
	if err != nil || len(objs) == 0 {
		return nil, false
	}
	p, ok := objs[0].(*corev1.Pod)
	return p, ok
}

func (a *Agent) podStats(ctx context.Context, pod *corev1.Pod, ctrs []runtime.Container, onlyCPUAndMemory bool) statsv1alpha1.PodStats {
	st := &a.summary
	ps := statsv1alpha1.PodStats{
		PodRef:     statsv1alpha1.PodReference{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID)},
		Containers: []statsv1alpha1.ContainerStats{},
	}
	if pod.Status.StartTime != nil {
		ps.StartTime = *pod.Status.StartTime
	}
	var cpuTotal, ws, usage, rss uint64
	var rate uint64
	rateOK := true
	var newest time.Time
	var netPid uint32
	for _, c := range ctrs {
		s, err := a.rt.Stats(ctx, c.ID)
		if err != nil {
			a.log.Debug("container stats", "container", c.ID, "err", err)
			continue
		}
		t := metav1.NewTime(s.Time)
		if s.Time.After(newest) {
			newest = s.Time
		}
		cpu, mem := s.CPUUsageNanos, s.MemoryWorkingSet
		cs := statsv1alpha1.ContainerStats{
			Name: c.Labels[runtime.LabelContainer], StartTime: metav1.NewTime(c.StartedAt),
			CPU: &statsv1alpha1.CPUStats{Time: t, UsageCoreNanoSeconds: &cpu, UsageNanoCores: st.rates.Rate("c/"+c.ID, s.Time, cpu)},
			Memory: &statsv1alpha1.MemoryStats{Time: t, WorkingSetBytes: &mem, UsageBytes: ptrTo(s.MemoryUsage), RSSBytes: ptrTo(s.MemoryRSS),
				PageFaults: ptrTo(s.PageFaults), MajorPageFaults: ptrTo(s.MajorPageFaults)},
		}
		if cs.CPU.UsageNanoCores == nil {
			rateOK = false
		} else {
			rate += *cs.CPU.UsageNanoCores
		}
		if c.StartedAt.IsZero() {
			cs.StartTime = metav1.NewTime(c.CreatedAt)
		}
		if !onlyCPUAndMemory {
			a.containerFs(ctx, c, &cs, s.Time) // ephemeral.go
		}
		ps.Containers = append(ps.Containers, cs)
		cpuTotal, ws, usage, rss = cpuTotal+cpu, ws+mem, usage+s.MemoryUsage, rss+s.MemoryRSS
		if netPid == 0 {
			netPid = c.Pid
		}
	}
	if !onlyCPUAndMemory {
		ps.VolumeStats = a.volumeStats(pod) // volstats.go
	}
	if len(ps.Containers) == 0 {
		return ps
	}
	if !onlyCPUAndMemory {
		ps.EphemeralStorage = a.podEphemeralStorage(pod, &ps, newest)
	}
	t := metav1.NewTime(newest)
	ps.CPU = &statsv1alpha1.CPUStats{Time: t, UsageCoreNanoSeconds: &cpuTotal}
	if rateOK {
		ps.CPU.UsageNanoCores = &rate
	}
	ps.Memory = &statsv1alpha1.MemoryStats{Time: t, WorkingSetBytes: &ws, UsageBytes: &usage, RSSBytes: &rss}
	if !onlyCPUAndMemory && !pod.Spec.HostNetwork && netPid != 0 {
		if ifs, err := stats.NetDev(fmt.Sprintf("/proc/%d/net/dev", netPid)); err == nil {
			ns := &statsv1alpha1.NetworkStats{Time: t}
			for _, i := range ifs {
				if i.Name == "lo" {
					continue
				}
				ns.Interfaces = append(ns.Interfaces, i)
				if i.Name == "eth0" {
					ns.InterfaceStats = i
				}
			}
			ps.Network = ns
		}
	}
	return ps
}

func ptrTo[T any](v T) *T { return &v }
