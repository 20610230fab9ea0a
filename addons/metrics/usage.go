package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Cluster resource usage in the ecosystem's metric names: the kubelet's
// /metrics/resource series (node_*, container_*, pod_*, the names
// metrics-server itself scrapes) and its volume stats
// (kubelet_volume_stats_*), for every node at once. Node, pod and
// container series carry a node label, as a Prometheus scrape of each
// kubelet relabelled with the node's name would.

// family is one metric name.
type family struct {
	name, help string
	counter    bool
	labels     []string // sorted by name, as exposition and remote write want
	// stamped samples carry the agent's sample time on /metrics, as the
	// kubelet's resource metrics do (its volume stats do not).
	stamped bool
	desc    *prometheus.Desc
}

// Label names (upstream's).
var (
	lnContainer = "container"
	lnNamespace = "namespace"
	lnNode      = "node"
	lnPod       = "pod"
	lnClaim     = "persistentvolumeclaim"
)

var (
	famNodeCPU = &family{name: "node_cpu_usage_seconds_total", help: "Cumulative CPU time used by the node, in core-seconds.",
		counter: true, labels: []string{lnNode}, stamped: true}
	famNodeMem = &family{name: "node_memory_working_set_bytes", help: "Working set memory of the node, in bytes.",
		labels: []string{lnNode}, stamped: true}
	famContainerCPU = &family{name: "container_cpu_usage_seconds_total", help: "Cumulative CPU time used by the container, in core-seconds.",
		counter: true, labels: []string{lnContainer, lnNamespace, lnNode, lnPod}, stamped: true}
	famContainerMem = &family{name: "container_memory_working_set_bytes", help: "Working set memory of the container, in bytes.",
		labels: []string{lnContainer, lnNamespace, lnNode, lnPod}, stamped: true}
	famPodCPU = &family{name: "pod_cpu_usage_seconds_total", help: "Cumulative CPU time used by the pod, in core-seconds.",
		counter: true, labels: []string{lnNamespace, lnNode, lnPod}, stamped: true}
	famPodMem = &family{name: "pod_memory_working_set_bytes", help: "Working set memory of the pod, in bytes.",
		labels: []string{lnNamespace, lnNode, lnPod}, stamped: true}
	famVolUsed = &family{name: "kubelet_volume_stats_used_bytes", help: "Bytes used on the PersistentVolumeClaim's volume.",
		labels: []string{lnNamespace, lnClaim}}
	famVolCapacity = &family{name: "kubelet_volume_stats_capacity_bytes", help: "Capacity of the PersistentVolumeClaim's volume, in bytes.",
		labels: []string{lnNamespace, lnClaim}}
	famVolAvailable = &family{name: "kubelet_volume_stats_available_bytes", help: "Bytes available on the PersistentVolumeClaim's volume.",
		labels: []string{lnNamespace, lnClaim}}
	famVolInodes = &family{name: "kubelet_volume_stats_inodes", help: "Inodes of the PersistentVolumeClaim's volume.",
		labels: []string{lnNamespace, lnClaim}}
	famVolInodesUsed = &family{name: "kubelet_volume_stats_inodes_used", help: "Inodes used on the PersistentVolumeClaim's volume.",
		labels: []string{lnNamespace, lnClaim}}
	famVolInodesFree = &family{name: "kubelet_volume_stats_inodes_free", help: "Free inodes on the PersistentVolumeClaim's volume.",
		labels: []string{lnNamespace, lnClaim}}

	families = []*family{famNodeCPU, famNodeMem, famContainerCPU, famContainerMem, famPodCPU, famPodMem,
		famVolUsed, famVolCapacity, famVolAvailable, famVolInodes, famVolInodesUsed, famVolInodesFree}
)

func init() {
	for _, f := range families {
		f.desc = prometheus.NewDesc(f.name, f.help, f.labels, nil)
	}
}

// sample is one series' latest value. Label values point into the
// snapshot (immutable), so building a round's samples allocates one slice.
type sample struct {
	fam *family
	lv  [4]*string // values of fam.labels
	v   float64
	ts  int64 // milliseconds since the epoch
}

var _ prometheus.Metric = (*sample)(nil)

// Desc implements prometheus.Metric.
func (s *sample) Desc() *prometheus.Desc { return s.fam.desc }

// Write implements prometheus.Metric. It allocates once: the label pairs
// and the value live in one block (scrapes may run concurrently, so the
// sample itself is never written).
func (s *sample) Write(m *dto.Metric) error {
	w := &struct {
		lps  [4]dto.LabelPair
		ptrs [4]*dto.LabelPair
		v    float64
		c    dto.Counter
		g    dto.Gauge
	}{v: s.v}
	n := len(s.fam.labels)
	for i := 0; i < n; i++ {
		w.lps[i].Name, w.lps[i].Value = &s.fam.labels[i], s.lv[i]
		w.ptrs[i] = &w.lps[i]
	}
	m.Label = w.ptrs[:n:n]
	if s.fam.counter {
		w.c.Value = &w.v
		m.Counter = &w.c
	} else {
		w.g.Value = &w.v
		m.Gauge = &w.g
	}
	if s.fam.stamped {
		m.TimestampMs = &s.ts
	}
	return nil
}

func ms(t time.Time) int64 { return t.UnixMilli() }

// appendSamples appends the series of snapshot s. Stale nodes and their
// pods and volumes are left out, as upstream: when a kubelet does not
// answer, Prometheus has no sample of its series for that scrape.
func appendSamples(dst []sample, s *Snapshot) []sample {
	for _, n := range s.Nodes {
		if n.Stale {
			continue
		}
		ts := ms(n.Time)
		dst = append(dst,
			sample{fam: famNodeCPU, lv: [4]*string{&n.Name}, v: float64(n.CPUTotal) / 1e9, ts: ts},
			sample{fam: famNodeMem, lv: [4]*string{&n.Name}, v: float64(n.Memory), ts: ts})
	}
	for _, p := range s.Pods {
		if p.Stale {
			continue
		}
		ts := ms(p.Time)
		for i := range p.Containers {
			c := &p.Containers[i]
			lv := [4]*string{&c.Name, &p.Namespace, &p.Node, &p.Name}
			dst = append(dst,
				sample{fam: famContainerCPU, lv: lv, v: float64(c.CPUTotal) / 1e9, ts: ts},
				sample{fam: famContainerMem, lv: lv, v: float64(c.Memory), ts: ts})
		}
		lv := [4]*string{&p.Namespace, &p.Node, &p.Name}
		dst = append(dst,
			sample{fam: famPodCPU, lv: lv, v: float64(p.CPUTotal) / 1e9, ts: ts},
			sample{fam: famPodMem, lv: lv, v: float64(p.WorkingSet), ts: ts})
	}
	for _, v := range s.Volumes {
		if v.Stale {
			continue
		}
		ts := ms(v.Time)
		lv := [4]*string{&v.Namespace, &v.Claim}
		dst = append(dst,
			sample{fam: famVolUsed, lv: lv, v: float64(v.UsedBytes), ts: ts},
			sample{fam: famVolCapacity, lv: lv, v: float64(v.CapacityBytes), ts: ts},
			sample{fam: famVolAvailable, lv: lv, v: float64(v.AvailableBytes), ts: ts})
		if v.Inodes > 0 {
			dst = append(dst,
				sample{fam: famVolInodes, lv: lv, v: float64(v.Inodes), ts: ts},
				sample{fam: famVolInodesUsed, lv: lv, v: float64(v.InodesUsed), ts: ts},
				sample{fam: famVolInodesFree, lv: lv, v: float64(v.InodesFree), ts: ts})
		}
	}
	return dst
}

// usageCollector is a prometheus.Collector of the latest snapshot's
// series. The samples of a snapshot are built once, on its first scrape,
// into one slice that later scrapes of the same snapshot reuse.
type usageCollector struct {
	c       *Collector
	mu      sync.Mutex
	snap    *Snapshot
	samples []sample
}

var _ prometheus.Collector = (*usageCollector)(nil)

// Describe implements prometheus.Collector.
func (u *usageCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range families {
		ch <- f.desc
	}
}

// Collect implements prometheus.Collector.
func (u *usageCollector) Collect(ch chan<- prometheus.Metric) {
	samples := u.current()
	for i := range samples {
		ch <- &samples[i]
	}
}

func (u *usageCollector) current() []sample {
	snap := u.c.Latest()
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.snap != snap {
		n := len(snap.Nodes)*2 + len(snap.Pods)*4 + len(snap.Volumes)*6
		u.samples, u.snap = appendSamples(make([]sample, 0, n), snap), snap
	}
	return u.samples
}

// UsageCollector is a prometheus.Collector of the cluster's resource usage
// from the latest snapshot, in the kubelet's metric names
// (node_cpu_usage_seconds_total, container_memory_working_set_bytes,
// kubelet_volume_stats_used_bytes...). New registers it with
// Options.Registerer.
func (c *Collector) UsageCollector() prometheus.Collector { return c.usage }
