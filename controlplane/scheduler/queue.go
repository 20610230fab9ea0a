package scheduler

import (
	"container/heap"
	"sync"
	"time"

	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
)

// unschedulableMaxStay is how long a pod may stay in the unschedulable
// pool before it is retried regardless of events (upstream: 5 minutes).
const unschedulableMaxStay = 5 * time.Minute

// podHeap is a heap of queued pods with an index by UID.
type podHeap struct {
	items []*framework.QueuedPodInfo
	index map[types.UID]int
	less  func(a, b *framework.QueuedPodInfo) bool
}

func newPodHeap(less func(a, b *framework.QueuedPodInfo) bool) *podHeap {
	return &podHeap{index: map[types.UID]int{}, less: less}
}

func (h *podHeap) Len() int           { return len(h.items) }
func (h *podHeap) Less(i, j int) bool { return h.less(h.items[i], h.items[j]) }
func (h *podHeap) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.index[h.items[i].Pod.UID] = i
	h.index[h.items[j].Pod.UID] = j
}
func (h *podHeap) Push(x any) {
	q := x.(*framework.QueuedPodInfo)
	h.index[q.Pod.UID] = len(h.items)
	h.items = append(h.items, q)
}
func (h *podHeap) Pop() any {
	n := len(h.items) - 1
	q := h.items[n]
	h.items[n] = nil
	h.items = h.items[:n]
	delete(h.index, q.Pod.UID)
	return q
}

func (h *podHeap) get(uid types.UID) *framework.QueuedPodInfo {
	if i, ok := h.index[uid]; ok {
		return h.items[i]
	}
	return nil
}

func (h *podHeap) addOrUpdate(q *framework.QueuedPodInfo) {
	if i, ok := h.index[q.Pod.UID]; ok {
		h.items[i] = q
		heap.Fix(h, i)
		return
	}
	heap.Push(h, q)
}

func (h *podHeap) remove(uid types.UID) *framework.QueuedPodInfo {
	if i, ok := h.index[uid]; ok {
		return heap.Remove(h, i).(*framework.QueuedPodInfo)
	}
	return nil
}

func (h *podHeap) peek() *framework.QueuedPodInfo {
	if len(h.items) == 0 {
		return nil
	}
	return h.items[0]
}

// schedulingQueue holds pods waiting to be scheduled: activeQ (ready, in
// QueueSort order), backoffQ (failed recently, waiting out an exponential
// backoff) and the unschedulable pool (waiting for a cluster event that may
// help, or for unschedulableMaxStay).
type schedulingQueue struct {
	mu            sync.Mutex
	cond          *sync.Cond
	active        *podHeap
	backoff       *podHeap
	unschedulable map[types.UID]*framework.QueuedPodInfo
	// schedulingCycle counts pops; moveRequestCycle is the cycle of the
	// last move request, so that a pod failing while an event arrived is
	// retried soon rather than parked.
	schedulingCycle  int64
	moveRequestCycle int64
	initialBackoff   time.Duration
	maxBackoff       time.Duration
	// pluginEvents says which events each plugin cares about (per profile).
	pluginEvents map[string]map[string]sets.Set[framework.ClusterEvent]
	closed       bool
	now          func() time.Time

	nominator *nominator
}

func newSchedulingQueue(less func(a, b *framework.QueuedPodInfo) bool, initialBackoff, maxBackoff time.Duration, pluginEvents map[string]map[string]sets.Set[framework.ClusterEvent]) *schedulingQueue {
	q := &schedulingQueue{
		active:         newPodHeap(less),
		backoff:        nil,
		unschedulable:  map[types.UID]*framework.QueuedPodInfo{},
		initialBackoff: initialBackoff,
		maxBackoff:     maxBackoff,
		pluginEvents:   pluginEvents,
		now:            time.Now,
		nominator:      newNominator(),
	}
	q.backoff = newPodHeap(func(a, b *framework.QueuedPodInfo) bool {
		return q.backoffExpiry(a).Before(q.backoffExpiry(b))
	})
	q.cond = sync.NewCond(&q.mu)
	return q
}

func (q *schedulingQueue) backoffDuration(p *framework.QueuedPodInfo) time.Duration {
	d := q.initialBackoff
	for i := 1; i < p.Attempts; i++ {
		if d > q.maxBackoff-d {
			return q.maxBackoff
		}
		d += d
	}
	return min(d, q.maxBackoff)
}

func (q *schedulingQueue) backoffExpiry(p *framework.QueuedPodInfo) time.Time {
	return p.Timestamp.Add(q.backoffDuration(p))
}

func (q *schedulingQueue) isBackingOff(p *framework.QueuedPodInfo) bool {
	return p.Attempts > 0 && q.backoffExpiry(p).After(q.now())
}

// Add queues a new pending pod.
func (q *schedulingQueue) Add(pod *corev1.Pod) {
	q.mu.Lock()
	defer q.mu.Unlock()
	qp := &framework.QueuedPodInfo{PodInfo: framework.NewPodInfo(pod), Timestamp: q.now()}
	q.backoff.remove(pod.UID)
	delete(q.unschedulable, pod.UID)
	q.active.addOrUpdate(qp)
	q.nominator.addFromStatus(qp.PodInfo)
	q.cond.Broadcast()
}

// Update replaces a pending pod. A pod whose spec or labels changed while
// unschedulable is retried.
func (q *schedulingQueue) Update(old, pod *corev1.Pod) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.nominator.update(old, framework.NewPodInfo(pod))
	if qp := q.active.get(pod.UID); qp != nil {
		qp.Update(pod)
		q.active.addOrUpdate(qp)
		return
	}
	if qp := q.backoff.get(pod.UID); qp != nil {
		qp.Update(pod)
		q.backoff.addOrUpdate(qp)
		return
	}
	if qp, ok := q.unschedulable[pod.UID]; ok {
		qp.Update(pod)
		if podUpdated(old, pod) {
			delete(q.unschedulable, pod.UID)
			if q.isBackingOff(qp) {
				q.backoff.addOrUpdate(qp)
			} else {
				q.active.addOrUpdate(qp)
				q.cond.Broadcast()
			}
		}
		return
	}
	// Not queued: being scheduled right now; its failure handler re-adds it.
}

// podUpdated reports changes other than status and bookkeeping metadata.
func podUpdated(old, cur *corev1.Pod) bool {
	strip := func(p *corev1.Pod) *corev1.Pod {
		c := p.DeepCopy()
		c.ResourceVersion = ""
		c.Generation = 0
		c.ManagedFields = nil
		c.Status = corev1.PodStatus{}
		return c
	}
	return !equality.Semantic.DeepEqual(strip(old), strip(cur))
}

// Delete removes a pod from the queue.
func (q *schedulingQueue) Delete(pod *corev1.Pod) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.active.remove(pod.UID)
	q.backoff.remove(pod.UID)
	delete(q.unschedulable, pod.UID)
	q.nominator.delete(pod)
}

// Pop blocks until a pod is active (or the queue is closed: nil).
func (q *schedulingQueue) Pop() *framework.QueuedPodInfo {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.active.Len() == 0 {
		if q.closed {
			return nil
		}
		q.cond.Wait()
	}
	qp := heap.Pop(q.active).(*framework.QueuedPodInfo)
	q.schedulingCycle++
	qp.Attempts++
	if qp.InitialAttemptTimestamp == nil {
		t := q.now()
		qp.InitialAttemptTimestamp = &t
	}
	return qp
}

// SchedulingCycle returns the current cycle number.
func (q *schedulingQueue) SchedulingCycle() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.schedulingCycle
}

// AddUnschedulable re-queues a pod that failed in cycle: to backoffQ when
// an event arrived during its cycle or it failed with an error, otherwise
// to the unschedulable pool.
func (q *schedulingQueue) AddUnschedulable(qp *framework.QueuedPodInfo, cycle int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	uid := qp.Pod.UID
	if q.active.get(uid) != nil || q.backoff.get(uid) != nil || q.unschedulable[uid] != nil {
		return
	}
	qp.Timestamp = q.now()
	if q.moveRequestCycle >= cycle || qp.UnschedulablePlugins.Len() == 0 {
		q.backoff.addOrUpdate(qp)
		return
	}
	q.unschedulable[uid] = qp
}

// MoveAllToActiveOrBackoff retries unschedulable pods that event may help.
func (q *schedulingQueue) MoveAllToActiveOrBackoff(event framework.ClusterEvent) {
	q.mu.Lock()
	defer q.mu.Unlock()
	moved := false
	for uid, qp := range q.unschedulable {
		if !q.relevant(qp, event) {
			continue
		}
		delete(q.unschedulable, uid)
		if q.isBackingOff(qp) {
			q.backoff.addOrUpdate(qp)
		} else {
			q.active.addOrUpdate(qp)
			moved = true
		}
	}
	q.moveRequestCycle = q.schedulingCycle
	if moved {
		q.cond.Broadcast()
	}
}

func (q *schedulingQueue) relevant(qp *framework.QueuedPodInfo, event framework.ClusterEvent) bool {
	if event == framework.EventForceActivate || qp.UnschedulablePlugins.Len() == 0 {
		return true
	}
	events := q.pluginEvents[qp.Pod.Spec.SchedulerName]
	for name := range qp.UnschedulablePlugins {
		ev, known := events[name]
		if !known || ev == nil || ev.Has(event) {
			return true
		}
	}
	return false
}

// flush moves pods whose backoff ended to activeQ and pods parked longer
// than unschedulableMaxStay out of the unschedulable pool.
func (q *schedulingQueue) flush() {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.now()
	moved := false
	for {
		qp := q.backoff.peek()
		if qp == nil || q.backoffExpiry(qp).After(now) {
			break
		}
		q.backoff.remove(qp.Pod.UID)
		q.active.addOrUpdate(qp)
		moved = true
	}
	for uid, qp := range q.unschedulable {
		if now.Sub(qp.Timestamp) > unschedulableMaxStay {
			delete(q.unschedulable, uid)
			if q.isBackingOff(qp) {
				q.backoff.addOrUpdate(qp)
			} else {
				q.active.addOrUpdate(qp)
				moved = true
			}
		}
	}
	if moved {
		q.cond.Broadcast()
	}
}

// Close wakes Pop callers and makes them return nil.
func (q *schedulingQueue) Close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}

// Len returns the sizes of the three queues.
func (q *schedulingQueue) Len() (active, backoff, unschedulable int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.active.Len(), q.backoff.Len(), len(q.unschedulable)
}

// nominator remembers pods nominated to nodes by preemption.
type nominator struct {
	mu     sync.RWMutex
	byNode map[string][]*framework.PodInfo
	nodeOf map[types.UID]string
}

func newNominator() *nominator {
	return &nominator{byNode: map[string][]*framework.PodInfo{}, nodeOf: map[types.UID]string{}}
}

func (n *nominator) addFromStatus(pi *framework.PodInfo) {
	if nn := pi.Pod.Status.NominatedNodeName; nn != "" {
		n.add(pi, nn)
	}
}

func (n *nominator) add(pi *framework.PodInfo, node string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.deleteLocked(pi.Pod.UID)
	n.nodeOf[pi.Pod.UID] = node
	n.byNode[node] = append(n.byNode[node], pi)
}

func (n *nominator) update(old *corev1.Pod, pi *framework.PodInfo) {
	n.mu.Lock()
	node, had := n.nodeOf[old.UID]
	n.mu.Unlock()
	if nn := pi.Pod.Status.NominatedNodeName; nn != "" {
		n.add(pi, nn)
	} else if had {
		// Keep a nomination the scheduler made that the API has not echoed yet.
		n.add(pi, node)
	}
}

func (n *nominator) delete(pod *corev1.Pod) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.deleteLocked(pod.UID)
}

func (n *nominator) deleteLocked(uid types.UID) {
	node, ok := n.nodeOf[uid]
	if !ok {
		return
	}
	delete(n.nodeOf, uid)
	list := n.byNode[node]
	for i, pi := range list {
		if pi.Pod.UID == uid {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(n.byNode, node)
	} else {
		n.byNode[node] = list
	}
}

// NominatedPodsForNode lists pods nominated to node.
func (n *nominator) NominatedPodsForNode(node string) []*framework.PodInfo {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return append([]*framework.PodInfo(nil), n.byNode[node]...)
}
