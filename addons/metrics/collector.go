package metrics

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// NodeUsage is a node's latest usage. CPU is in nano-cores, derived from
// two samples of cumulative usage; Memory is the working set in bytes.
type NodeUsage struct {
	Name   string
	Time   time.Time // when the agent sampled it
	Window time.Duration
	CPU    int64
	Memory int64
	// CPUTotal is the cumulative CPU (usageCoreNanoSeconds), for counters.
	CPUTotal uint64
	// NetworkRx and NetworkTx are bytes per second on the node's default
	// interface (0 until two samples exist); FsUsed and FsCapacity are
	// the node filesystem's.
	NetworkRx, NetworkTx float64
	FsUsed, FsCapacity   uint64
	// Stale is set when the latest scrape failed: the values are the last
	// good ones (from Time), never zeros. LastError says why.
	Stale     bool
	LastError string
}

// PodUsage is a pod's latest usage (sum of its containers').
type PodUsage struct {
	Namespace, Name, UID, Node string
	Time                       time.Time
	Window                     time.Duration
	CPU, Memory                int64
	// CPUTotal (cumulative core-nanoseconds) and WorkingSet are the pod's
	// own (its cgroup's, pause and all) when the agent reports them, else
	// its containers' sums (CPU and Memory are always the containers' sums,
	// as metrics-server's).
	CPUTotal             uint64
	WorkingSet           int64
	NetworkRx, NetworkTx float64
	Containers           []ContainerUsage
	Stale                bool
}

// ContainerUsage is one container's latest usage; CPUTotal is cumulative
// (core-nanoseconds).
type ContainerUsage struct {
	Name        string
	CPU, Memory int64
	CPUTotal    uint64
}

// VolumeUsage is the latest usage of a PersistentVolumeClaim's volume, as
// reported by the agent of a node where a pod mounts it (the summary's
// pods[].volume[] entries with a pvcRef, v1alpha1 VolumeStats). Volumes
// without both usedBytes and capacityBytes are left out.
type VolumeUsage struct {
	Namespace, Claim string // the claim
	Pod, Node        string // the pod ("<ns>/<name>") and node that reported it
	Time             time.Time
	// UsedBytes and CapacityBytes are the volume filesystem's; AvailableBytes
	// is the agent's value, or CapacityBytes-UsedBytes when it sent none.
	UsedBytes, CapacityBytes, AvailableBytes uint64
	// Inodes, InodesUsed and InodesFree are 0 when not reported (Inodes 0
	// means unknown, as for block volumes).
	Inodes, InodesUsed, InodesFree uint64
	// Stale: the node did not answer the latest scrape; the values are the
	// last good ones (from Time).
	Stale bool
}

// Snapshot is the result of the latest scrape round; it is immutable.
type Snapshot struct {
	Time  time.Time
	Nodes map[string]*NodeUsage
	Pods  map[string]*PodUsage // "<ns>/<name>"
	// Volumes are PersistentVolumeClaims' volumes by "<ns>/<claim>". A
	// claim mounted by several pods is reported once, with the newest
	// sample.
	Volumes map[string]*VolumeUsage
}

// cum is a cumulative counter sample.
type cum struct {
	t time.Time
	v uint64
}

// nodeState is what the collector keeps per node between rounds.
type nodeState struct {
	usage  *NodeUsage
	pods   []*PodUsage
	vols   []*VolumeUsage
	lastOK time.Time
	cpu    cum
	rx, tx cum
	ctrs   map[string]cum // "<uid>/<container>" → CPU
	podNet map[string][2]cum
}

// rate derives a per-second rate from two cumulative samples; ok is false
// without a usable previous sample (first scrape, a reset, no time passed).
func rate(prev cum, t time.Time, v uint64) (float64, time.Duration, bool) {
	if prev.t.IsZero() || v < prev.v || !t.After(prev.t) {
		return 0, 0, false
	}
	d := t.Sub(prev.t)
	return float64(v-prev.v) / d.Seconds(), d, true
}

// round scrapes every node concurrently and publishes a new snapshot.
func (c *Collector) round(ctx context.Context) {
	start := time.Now()
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		c.log.Error("list nodes", "err", err)
		return
	}
	type result struct {
		node string
		sum  *Summary
		err  error
	}
	results := make([]result, len(nodes))
	var next atomic.Int64
	var wg sync.WaitGroup
	workers := min(c.opts.Workers, len(nodes))
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(nodes) {
					return
				}
				sctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
				s, err := c.opts.Scraper.Scrape(sctx, nodes[i])
				cancel()
				results[i] = result{node: nodes[i].Name, sum: s, err: err}
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}

	now := time.Now()
	c.mu.Lock()
	seen := make(map[string]bool, len(nodes))
	prev := c.last.Load()
	snap := &Snapshot{Time: now, Nodes: make(map[string]*NodeUsage, len(nodes)), Pods: make(map[string]*PodUsage, len(prev.Pods)),
		Volumes: make(map[string]*VolumeUsage, len(prev.Volumes))}
	failed := 0
	for _, r := range results {
		seen[r.node] = true
		st := c.state[r.node]
		if st == nil {
			st = &nodeState{ctrs: map[string]cum{}, podNet: map[string][2]cum{}}
			c.state[r.node] = st
		}
		if r.err == nil && r.sum == nil {
			r.err = errors.New("empty summary")
		}
		if r.err != nil {
			failed++
			c.metrics.scrapeErrors.Inc()
			c.log.Debug("scrape failed", "node", r.node, "err", r.err)
			if st.usage == nil || now.Sub(st.lastOK) > c.opts.MaxStale {
				continue // nothing recent to show: absent, not zero
			}
			u := *st.usage
			u.Stale, u.LastError = true, r.err.Error()
			st.usage = &u
			snap.Nodes[r.node] = st.usage
			for _, p := range st.pods {
				q := *p
				q.Stale = true
				snap.Pods[q.Namespace+"/"+q.Name] = &q
			}
			for _, v := range st.vols {
				w := *v
				w.Stale = true
				snap.putVolume(&w)
			}
			continue
		}
		c.update(st, r.node, r.sum)
		if st.usage != nil {
			snap.Nodes[r.node] = st.usage
		}
		for _, p := range st.pods {
			snap.Pods[p.Namespace+"/"+p.Name] = p
		}
		for _, v := range st.vols {
			snap.putVolume(v)
		}
	}
	for name := range c.state {
		if !seen[name] {
			delete(c.state, name)
		}
	}
	c.last.Store(snap)
	c.mu.Unlock()
	c.record(snap)
	if c.rw != nil {
		c.rw.enqueue(c.usage.current(), now)
	}
	c.metrics.staleNodes.Set(float64(failed))
	c.metrics.roundSeconds.Observe(time.Since(start).Seconds())
	c.ready.Store(true)
}

// update folds one good summary into a node's state.
func (c *Collector) update(st *nodeState, node string, s *Summary) {
	st.lastOK = time.Now()
	n := s.Node
	if n.CPU != nil && n.CPU.UsageCoreNanoSeconds != nil && n.Memory != nil && n.Memory.WorkingSetBytes != nil {
		t := n.CPU.Time.Time
		u := &NodeUsage{Name: node, Time: t, Memory: int64(*n.Memory.WorkingSetBytes), CPUTotal: *n.CPU.UsageCoreNanoSeconds}
		if r, d, ok := rate(st.cpu, t, *n.CPU.UsageCoreNanoSeconds); ok {
			u.CPU, u.Window = int64(r), d
		} else if n.CPU.UsageNanoCores != nil {
			// First sample: the agent's own rate, over its last interval.
			u.CPU, u.Window = int64(*n.CPU.UsageNanoCores), c.opts.Interval
		} else {
			u = nil
		}
		st.cpu = cum{t, *n.CPU.UsageCoreNanoSeconds}
		if u != nil {
			if net := n.Network; net != nil && net.RxBytes != nil && net.TxBytes != nil {
				if r, _, ok := rate(st.rx, net.Time.Time, *net.RxBytes); ok {
					u.NetworkRx = r
				}
				if r, _, ok := rate(st.tx, net.Time.Time, *net.TxBytes); ok {
					u.NetworkTx = r
				}
				st.rx, st.tx = cum{net.Time.Time, *net.RxBytes}, cum{net.Time.Time, *net.TxBytes}
			}
			if fs := n.Fs; fs != nil && fs.UsedBytes != nil && fs.CapacityBytes != nil {
				u.FsUsed, u.FsCapacity = *fs.UsedBytes, *fs.CapacityBytes
			}
			st.usage = u
		}
	}
	ctrs := make(map[string]cum, len(st.ctrs))
	podNet := make(map[string][2]cum, len(s.Pods))
	st.pods = st.pods[:0:0]
	st.vols = st.vols[:0:0]
	for i := range s.Pods {
		ps := &s.Pods[i]
		for j := range ps.Volumes {
			if v := volumeUsage(&ps.Volumes[j], ps, node); v != nil {
				st.vols = append(st.vols, v)
			}
		}
		p := &PodUsage{Namespace: ps.PodRef.Namespace, Name: ps.PodRef.Name, UID: ps.PodRef.UID, Node: node}
		complete := len(ps.Containers) > 0
		for j := range ps.Containers {
			cs := &ps.Containers[j]
			if cs.CPU == nil || cs.CPU.UsageCoreNanoSeconds == nil || cs.Memory == nil || cs.Memory.WorkingSetBytes == nil {
				complete = false
				continue
			}
			key := ps.PodRef.UID + "/" + cs.Name
			t := cs.CPU.Time.Time
			ctrs[key] = cum{t, *cs.CPU.UsageCoreNanoSeconds}
			cu := ContainerUsage{Name: cs.Name, Memory: int64(*cs.Memory.WorkingSetBytes), CPUTotal: *cs.CPU.UsageCoreNanoSeconds}
			if r, d, ok := rate(st.ctrs[key], t, *cs.CPU.UsageCoreNanoSeconds); ok {
				cu.CPU = int64(r)
				p.Window = max(p.Window, d)
			} else if cs.CPU.UsageNanoCores != nil {
				cu.CPU = int64(*cs.CPU.UsageNanoCores)
				p.Window = max(p.Window, c.opts.Interval)
			} else {
				complete = false // metrics-server leaves such pods out too
				continue
			}
			if t.After(p.Time) {
				p.Time = t
			}
			p.CPU += cu.CPU
			p.Memory += cu.Memory
			p.CPUTotal += cu.CPUTotal
			p.Containers = append(p.Containers, cu)
		}
		p.WorkingSet = p.Memory
		if ps.CPU != nil && ps.CPU.UsageCoreNanoSeconds != nil {
			p.CPUTotal = *ps.CPU.UsageCoreNanoSeconds
		}
		if ps.Memory != nil && ps.Memory.WorkingSetBytes != nil {
			p.WorkingSet = int64(*ps.Memory.WorkingSetBytes)
		}
		if net := ps.Network; net != nil && net.RxBytes != nil && net.TxBytes != nil {
			prev := st.podNet[ps.PodRef.UID]
			t := net.Time.Time
			if r, _, ok := rate(prev[0], t, *net.RxBytes); ok {
				p.NetworkRx = r
			}
			if r, _, ok := rate(prev[1], t, *net.TxBytes); ok {
				p.NetworkTx = r
			}
			podNet[ps.PodRef.UID] = [2]cum{{t, *net.RxBytes}, {t, *net.TxBytes}}
		}
		if complete {
			st.pods = append(st.pods, p)
		}
	}
	st.ctrs, st.podNet = ctrs, podNet
}

// volumeUsage is a pod's volume entry as VolumeUsage, nil unless it is a
// claim's with used and capacity bytes.
func volumeUsage(vs *VolumeSample, ps *PodSummary, node string) *VolumeUsage {
	if vs.PVCRef == nil || vs.PVCRef.Name == "" || vs.UsedBytes == nil || vs.CapacityBytes == nil {
		return nil
	}
	ns := vs.PVCRef.Namespace
	if ns == "" {
		ns = ps.PodRef.Namespace
	}
	v := &VolumeUsage{Namespace: ns, Claim: vs.PVCRef.Name, Pod: ps.PodRef.Namespace + "/" + ps.PodRef.Name, Node: node,
		Time: vs.Time.Time, UsedBytes: *vs.UsedBytes, CapacityBytes: *vs.CapacityBytes}
	switch {
	case vs.AvailableBytes != nil:
		v.AvailableBytes = *vs.AvailableBytes
	case v.CapacityBytes > v.UsedBytes:
		v.AvailableBytes = v.CapacityBytes - v.UsedBytes
	}
	for _, f := range []struct {
		dst *uint64
		src *uint64
	}{{&v.Inodes, vs.Inodes}, {&v.InodesUsed, vs.InodesUsed}, {&v.InodesFree, vs.InodesFree}} {
		if f.src != nil {
			*f.dst = *f.src
		}
	}
	return v
}

// putVolume keeps the newest sample of a claim (several pods, possibly on
// several nodes, may mount it); a fresh sample wins over a stale one.
func (s *Snapshot) putVolume(v *VolumeUsage) {
	key := v.Namespace + "/" + v.Claim
	if old, ok := s.Volumes[key]; ok && (old.Stale == v.Stale && !v.Time.After(old.Time) || !old.Stale && v.Stale) {
		return
	}
	s.Volumes[key] = v
}

// record appends the snapshot to the history: nodes, pods, containers, and
// sums per namespace and per workload. Stale values are not recorded (a
// gap, not a repeat).
func (c *Collector) record(s *Snapshot) {
	h := c.history
	h.Write(s.Time, func(b Batch) {
		for _, n := range s.Nodes {
			if !n.Stale {
				b.Put(KindNode, n.Name, float64(n.CPU)/1e9, float64(n.Memory))
			}
		}
		for key, p := range s.Pods {
			if p.Stale {
				continue
			}
			cpu, mem := float64(p.CPU)/1e9, float64(p.Memory)
			b.Put(KindPod, key, cpu, mem)
			for _, ct := range p.Containers {
				b.Put(KindContainer, key+"/"+ct.Name, float64(ct.CPU)/1e9, float64(ct.Memory))
			}
			b.Add(KindNamespace, p.Namespace, cpu, mem)
			if w := c.workloadOf(p.Namespace, p.Name); w != "" {
				b.Add(KindWorkload, w, cpu, mem)
			}
		}
	})
	c.metrics.historySeries.Set(float64(h.Len(KindNode) + h.Len(KindNamespace) + h.Len(KindWorkload) + h.Len(KindPod) + h.Len(KindContainer)))
}

// workloadOf names a pod's workload: its controller, with a ReplicaSet
// created by a Deployment (pod-template-hash suffix) folded into the
// Deployment. "" for pods without a controller or not in the cache.
func (c *Collector) workloadOf(ns, name string) string {
	pod, err := c.pods.Pods(ns).Get(name)
	if err != nil {
		return ""
	}
	ref := metav1.GetControllerOf(pod)
	if ref == nil {
		return ""
	}
	kind, owner := ref.Kind, ref.Name
	if kind == "ReplicaSet" {
		if h := pod.Labels["pod-template-hash"]; h != "" {
			if d, ok := strings.CutSuffix(owner, "-"+h); ok {
				kind, owner = "Deployment", d
			}
		}
	}
	return fmt.Sprintf("%s/%s/%s", ns, kind, owner)
}

// pod returns the pod object of usage p if it still exists (same UID).
func (c *Collector) pod(p *PodUsage) (*corev1.Pod, bool) {
	pod, err := c.pods.Pods(p.Namespace).Get(p.Name)
	if err != nil || (p.UID != "" && string(pod.UID) != p.UID) {
		return nil, false
	}
	return pod, true
}

// Latest is the latest snapshot (empty before the first round).
func (c *Collector) Latest() *Snapshot { return c.last.Load() }

// History is the collector's history of every series.
func (c *Collector) History() *History { return c.history }
