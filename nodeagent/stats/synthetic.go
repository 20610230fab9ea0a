package stats

import (
	"hash/fnv"
	"math"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// SyntheticPod is a pod a hollow node reports.
type SyntheticPod struct {
	Namespace, Name, UID string
	Containers           []string
	StartTime            time.Time
}

// SyntheticNode describes a hollow node.
type SyntheticNode struct {
	Name        string
	StartTime   time.Time
	CPUCores    float64
	MemoryBytes uint64
}

// Synthetic period and amplitude of the CPU wave.
const (
	synthPeriod = 5 * time.Minute
	synthWave   = 0.2
)

// Synthetic returns a plausible, deterministic Summary for a hollow node.
// The numbers are SYNTHETIC: every container gets a steady CPU rate
// (5m–250m, from a hash of its pod UID and name) with a ±20 % five-minute
// wave, and a steady working set (16–256 MiB); cumulative usage is the
// integral of the rate since the pod started, so rates derived from two
// summaries match usageNanoCores. The node adds 100m and 512 MiB of its
// own. They exist so that the metrics pipeline can be tested and
// benchmarked at scale without containers.
func Synthetic(n SyntheticNode, pods []SyntheticPod, now time.Time) *statsv1alpha1.Summary {
	t := metav1.NewTime(now)
	sum := &statsv1alpha1.Summary{Pods: make([]statsv1alpha1.PodStats, 0, len(pods))}
	nodeRate, nodeTotal := 0.1e9, 0.1e9*now.Sub(n.StartTime).Seconds()
	nodeMem := uint64(512 << 20)
	for _, p := range pods {
		ps := statsv1alpha1.PodStats{
			PodRef:     statsv1alpha1.PodReference{Namespace: p.Namespace, Name: p.Name, UID: p.UID},
			StartTime:  metav1.NewTime(p.StartTime),
			Containers: make([]statsv1alpha1.ContainerStats, 0, len(p.Containers)),
		}
		var podRate, podTotal float64
		var podMem uint64
		for _, c := range p.Containers {
			h := hash(p.UID + "/" + c)
			base := (5 + float64(h%246)) * 1e6 // nano-cores: 5m..250m
			mem := uint64(16+(h>>8)%241) << 20
			rate, total := wave(base, p.StartTime, now)
			ps.Containers = append(ps.Containers, statsv1alpha1.ContainerStats{
				Name: c, StartTime: metav1.NewTime(p.StartTime),
				CPU:    cpuStats(t, rate, total),
				Memory: memStats(t, mem, 0),
			})
			podRate, podTotal, podMem = podRate+rate, podTotal+total, podMem+mem
		}
		ps.CPU, ps.Memory = cpuStats(t, podRate, podTotal), memStats(t, podMem, 0)
		rx, tx := uint64(now.Sub(p.StartTime).Seconds()*2048), uint64(now.Sub(p.StartTime).Seconds()*1024)
		ps.Network = &statsv1alpha1.NetworkStats{Time: t, InterfaceStats: statsv1alpha1.InterfaceStats{Name: "eth0", RxBytes: &rx, TxBytes: &tx}}
		sum.Pods = append(sum.Pods, ps)
		nodeRate, nodeTotal, nodeMem = nodeRate+podRate, nodeTotal+podTotal, nodeMem+podMem
	}
	capacity := n.MemoryBytes
	if capacity < nodeMem {
		capacity = nodeMem
	}
	up := now.Sub(n.StartTime).Seconds()
	rx, tx := uint64(up*1e6), uint64(up*5e5)
	zero := uint64(0)
	sum.Node = statsv1alpha1.NodeStats{
		NodeName: n.Name, StartTime: metav1.NewTime(n.StartTime),
		CPU:     cpuStats(t, nodeRate, nodeTotal),
		Memory:  memStats(t, nodeMem, capacity-nodeMem),
		Network: &statsv1alpha1.NetworkStats{Time: t, InterfaceStats: statsv1alpha1.InterfaceStats{Name: "eth0", RxBytes: &rx, TxBytes: &tx, RxErrors: &zero, TxErrors: &zero}},
	}
	return sum
}

// wave is a rate of base·(1 + a·sin(2πt/T)) at now and its integral since
// start.
func wave(base float64, start, now time.Time) (rate, total float64) {
	el := now.Sub(start).Seconds()
	if el < 0 {
		el = 0
	}
	T := synthPeriod.Seconds()
	w := 2 * math.Pi / T
	rate = base * (1 + synthWave*math.Sin(w*el))
	total = base * (el + synthWave/w*(1-math.Cos(w*el)))
	return rate, total
}

func cpuStats(t metav1.Time, rate, total float64) *statsv1alpha1.CPUStats {
	r, c := uint64(rate), uint64(total)
	return &statsv1alpha1.CPUStats{Time: t, UsageNanoCores: &r, UsageCoreNanoSeconds: &c}
}

func memStats(t metav1.Time, ws, avail uint64) *statsv1alpha1.MemoryStats {
	usage := ws + ws/8
	m := &statsv1alpha1.MemoryStats{Time: t, WorkingSetBytes: &ws, UsageBytes: &usage, RSSBytes: &ws}
	if avail > 0 {
		m.AvailableBytes = &avail
	}
	return m
}

func hash(s string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	return h.Sum64()
}
