package replicaset

import (
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/internal/podutil"
	corev1 "k8s.io/api/core/v1"
)

// PodDeletionCost is the annotation that lowers or raises a pod's priority
// for deletion on scale down.
const PodDeletionCost = "controller.kubernetes.io/pod-deletion-cost"

// rankedPods sorts pods so that the ones to delete first come first, with
// upstream's order: unscheduled before scheduled; Pending before Unknown
// before Running; not ready before ready; lower deletion cost first; more
// pods of the same family on the node first; ready for less time first
// (log-scale buckets); more container restarts first; newer before older.
type rankedPods struct {
	pods []*corev1.Pod
	// rank is the number of related active pods on each pod's node.
	rank []int
	now  time.Time
}

func (r rankedPods) Len() int { return len(r.pods) }
func (r rankedPods) Swap(i, j int) {
	r.pods[i], r.pods[j] = r.pods[j], r.pods[i]
	r.rank[i], r.rank[j] = r.rank[j], r.rank[i]
}

func (r rankedPods) Less(i, j int) bool {
	a, b := r.pods[i], r.pods[j]
	if (a.Spec.NodeName == "") != (b.Spec.NodeName == "") {
		return a.Spec.NodeName == ""
	}
	if pa, pb := phaseOrder(a.Status.Phase), phaseOrder(b.Status.Phase); pa != pb {
		return pa < pb
	}
	if ra, rb := podutil.IsReady(a), podutil.IsReady(b); ra != rb {
		return !ra
	}
	if ca, cb := deletionCost(a), deletionCost(b); ca != cb {
		return ca < cb
	}
	if r.rank[i] != r.rank[j] {
		return r.rank[i] > r.rank[j]
	}
	if podutil.IsReady(a) && podutil.IsReady(b) {
		ta, tb := readyBucket(a, r.now), readyBucket(b, r.now)
		if ta != tb {
			return ta < tb
		}
	}
	if ra, rb := maxRestarts(a), maxRestarts(b); ra != rb {
		return ra > rb
	}
	ta, tb := a.CreationTimestamp, b.CreationTimestamp
	if ta.IsZero() != tb.IsZero() {
		return ta.IsZero()
	}
	if !ta.Equal(&tb) {
		return tb.Before(&ta)
	}
	return a.Name > b.Name
}

func phaseOrder(p corev1.PodPhase) int {
	switch p {
	case corev1.PodPending, "":
		return 0
	case corev1.PodUnknown:
		return 1
	case corev1.PodRunning:
		return 2
	}
	return 3
}

func deletionCost(p *corev1.Pod) int64 {
	v, ok := p.Annotations[PodDeletionCost]
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0
	}
	return n
}

// readyBucket is the log2 of the seconds a pod has been ready, so pods that
// became ready at nearly the same time compare equal (upstream's
// LogarithmicScaleDownOnDeletion).
func readyBucket(p *corev1.Pod, now time.Time) int {
	c := podutil.ReadyCondition(p)
	if c == nil || c.LastTransitionTime.IsZero() {
		return -1
	}
	d := now.Sub(c.LastTransitionTime.Time).Seconds()
	if d < 1 {
		return 0
	}
	return int(math.Log2(d)) + 1
}

func maxRestarts(p *corev1.Pod) int32 {
	var m int32
	for _, c := range p.Status.ContainerStatuses {
		m = max(m, c.RestartCount)
	}
	return m
}

// PodsToDelete picks the n pods of filtered to delete first. related are the
// active pods of the whole family (this controller and its siblings under
// the same owner); pods on nodes crowded with relatives go first.
func PodsToDelete(filtered, related []*corev1.Pod, n int, now time.Time) []*corev1.Pod {
	if n >= len(filtered) {
		return filtered
	}
	onNode := map[string]int{}
	for _, p := range related {
		if p.Spec.NodeName != "" && podutil.IsActive(p) {
			onNode[p.Spec.NodeName]++
		}
	}
	r := rankedPods{pods: append([]*corev1.Pod(nil), filtered...), rank: make([]int, len(filtered)), now: now}
	for i, p := range r.pods {
		if p.Spec.NodeName != "" {
			r.rank[i] = onNode[p.Spec.NodeName]
		}
	}
	sort.Sort(r)
	return r.pods[:n]
}
