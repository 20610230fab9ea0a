// Package nodelifecycle holds upstream's node-lifecycle-controller and
// taint-eviction-controller. The first watches Nodes and their Leases in
// kube-node-lease and, when a node stops renewing both for the monitor
// grace period, sets its conditions Unknown, marks its pods not ready and
// taints it (NoSchedule at once, NoExecute through per-zone rate limiters);
// the second deletes pods from NoExecute-tainted nodes once their
// tolerations run out. See README.md.
package nodelifecycle

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	coordlisters "k8s.io/client-go/listers/coordination/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/client-go/util/workqueue"
)

// Name is upstream's name of the controller.
const Name = "node-lifecycle-controller"

// LeaseNamespace holds node heartbeat Leases.
const LeaseNamespace = corev1.NamespaceNodeLease

// excludeDisruptionLabel keeps a node out of zone health counting.
const excludeDisruptionLabel = "node.kubernetes.io/exclude-disruption"

// Timing is the controller's tuning; zero fields get upstream's defaults.
type Timing struct {
	// MonitorGracePeriod: a node whose Lease and Ready condition were not
	// renewed for this long becomes Unknown (--node-monitor-grace-period, 40s).
	MonitorGracePeriod time.Duration
	// StartupGracePeriod replaces it for a node that never posted a Ready
	// condition (--node-startup-grace-period, 60s).
	StartupGracePeriod time.Duration
	// MonitorPeriod is how often node health is checked (--node-monitor-period, 5s).
	MonitorPeriod time.Duration
	// EvictionRate is how many nodes per second get a NoExecute taint in a
	// healthy zone (--node-eviction-rate, 0.1); burst 1.
	EvictionRate float32
	// SecondaryEvictionRate applies in a partially disrupted zone larger
	// than LargeClusterSizeThreshold (--secondary-node-eviction-rate, 0.01);
	// smaller such zones stop tainting.
	SecondaryEvictionRate float32
	// UnhealthyZoneThreshold is the fraction of not-ready nodes (at least
	// 3) that makes a zone partially disrupted (--unhealthy-zone-threshold, 0.55).
	UnhealthyZoneThreshold float32
	// LargeClusterSizeThreshold (--large-cluster-size-threshold, 50).
	LargeClusterSizeThreshold int
}

// Defaults fills zero fields with upstream's values.
func (t *Timing) Defaults() {
	if t.MonitorGracePeriod <= 0 {
		t.MonitorGracePeriod = 40 * time.Second
	}
	if t.StartupGracePeriod <= 0 {
		t.StartupGracePeriod = 60 * time.Second
	}
	if t.MonitorPeriod <= 0 {
		t.MonitorPeriod = 5 * time.Second
	}
	if t.EvictionRate <= 0 {
		t.EvictionRate = 0.1
	}
	if t.SecondaryEvictionRate < 0 {
		t.SecondaryEvictionRate = 0
	} else if t.SecondaryEvictionRate == 0 {
		t.SecondaryEvictionRate = 0.01
	}
	if t.UnhealthyZoneThreshold <= 0 {
		t.UnhealthyZoneThreshold = 0.55
	}
	if t.LargeClusterSizeThreshold <= 0 {
		t.LargeClusterSizeThreshold = 50
	}
}

// Config is what the controller needs.
type Config struct {
	Client    kubernetes.Interface
	Informers informers.SharedInformerFactory
	Recorder  record.EventRecorder
	Logger    *slog.Logger
	Timing    Timing
}

// zoneState is a zone's health, as upstream.
type zoneState string

const (
	stateInitial           zoneState = "Initial"
	stateNormal            zoneState = "Normal"
	stateFullDisruption    zoneState = "FullDisruption"
	statePartialDisruption zoneState = "PartialDisruption"
)

// health is what the controller last observed of a node; probe is when
// it last saw the node's Lease or Ready condition renewed (its own clock,
// so skew between nodes and controller does not matter).
type health struct {
	ready          *corev1.NodeCondition
	probe          time.Time
	readyChangedAt time.Time
	lease          *coordinationv1.Lease
}

// Controller is the node lifecycle controller.
type Controller struct {
	cfg    Config
	log    *slog.Logger
	nodes  corelisters.NodeLister
	leases coordlisters.LeaseLister
	pods   cache.Indexer
	synced []cache.InformerSynced
	// noSchedule holds node names whose NoSchedule taints need checking.
	noSchedule workqueue.TypedRateLimitingInterface[string]
	now        func() time.Time

	mu         sync.Mutex // guards the maps below
	health     map[string]*health
	zoneStates map[string]zoneState
	tainters   map[string]*tainter
	retryPods  map[string]bool // nodes whose pods could not all be marked not ready
}

var _ controllers.Controller = (*Controller)(nil)

// New returns the controller.
func New(cfg Config) (*Controller, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Timing.Defaults()
	ni := cfg.Informers.Core().V1().Nodes()
	li := cfg.Informers.Coordination().V1().Leases()
	pi := cfg.Informers.Core().V1().Pods()
	if err := addPodNodeIndex(pi.Informer()); err != nil {
		return nil, fmt.Errorf("%s: pod index: %w", Name, err)
	}
	c := &Controller{cfg: cfg, log: cfg.Logger.With("component", Name), nodes: ni.Lister(), leases: li.Lister(),
		pods:       pi.Informer().GetIndexer(),
		synced:     []cache.InformerSynced{ni.Informer().HasSynced, li.Informer().HasSynced, pi.Informer().HasSynced},
		noSchedule: controllers.NewQueue(Name), now: time.Now,
		health: map[string]*health{}, zoneStates: map[string]zoneState{}, tainters: map[string]*tainter{}, retryPods: map[string]bool{}}
	if _, err := ni.Informer().AddEventHandler(controllers.Enqueue(c.noSchedule)); err != nil {
		return nil, fmt.Errorf("%s: node handler: %w", Name, err)
	}
	return c, nil
}

// Name implements controllers.Controller.
func (c *Controller) Name() string { return Name }

// Run implements controllers.Controller: the health monitor every
// MonitorPeriod, the NoExecute tainting pass every 100ms (upstream's
// nodeEvictionPeriod) and workers keeping NoSchedule taints in step with
// node conditions.
func (c *Controller) Run(ctx context.Context, workers int) error {
	if !controllers.WaitForSync(ctx, c.synced...) {
		c.noSchedule.ShutDown()
		return ctx.Err()
	}
	c.log.Info("node lifecycle controller started", "gracePeriod", c.cfg.Timing.MonitorGracePeriod, "evictionRate", c.cfg.Timing.EvictionRate)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		c.every(ctx, c.cfg.Timing.MonitorPeriod, c.monitor)
	}()
	go func() {
		defer wg.Done()
		c.every(ctx, 100*time.Millisecond, c.noExecuteTaintingPass)
	}()
	controllers.RunWorkers(ctx, c.noSchedule, workers, c.log, c.reconcileNoSchedule)
	wg.Wait()
	return nil
}

func (c *Controller) every(ctx context.Context, d time.Duration, fn func(context.Context)) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		fn(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func readyCondition(st *corev1.NodeStatus) *corev1.NodeCondition {
	for i := range st.Conditions {
		if st.Conditions[i].Type == corev1.NodeReady {
			return &st.Conditions[i]
		}
	}
	return nil
}

// monitor is one pass of upstream's monitorNodeHealth.
func (c *Controller) monitor(ctx context.Context) {
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	zoneConditions := map[string][]*corev1.NodeCondition{}
	seen := map[string]bool{}
	for _, cached := range nodes {
		node := cached.DeepCopy()
		seen[node.Name] = true
		zone := zoneKey(node)
		c.mu.Lock()
		if _, ok := c.zoneStates[zone]; !ok {
			c.zoneStates[zone] = stateInitial
			c.tainters[zone] = newTainter(c.cfg.Timing.EvictionRate)
		}
		c.mu.Unlock()
		observed, current, err := c.updateHealth(ctx, node)
		if err != nil {
			if ctx.Err() == nil {
				c.log.Warn("update node health", "node", node.Name, "err", err)
			}
			continue
		}
		if node.Labels[excludeDisruptionLabel] == "" {
			zoneConditions[zone] = append(zoneConditions[zone], current)
		}
		if current == nil {
			continue
		}
		c.taintForEviction(ctx, node, observed)
		c.mu.Lock()
		retry := c.retryPods[node.Name]
		c.mu.Unlock()
		becameNotReady := current.Status != corev1.ConditionTrue && observed.Status == corev1.ConditionTrue
		if becameNotReady {
			c.log.Info("node is not ready", "node", node.Name, "status", current.Status, "reason", current.Reason)
			if c.cfg.Recorder != nil {
				c.cfg.Recorder.Eventf(&corev1.ObjectReference{Kind: "Node", Name: node.Name, UID: node.UID},
					corev1.EventTypeNormal, "NodeNotReady", "Node %s status is now: NodeNotReady", node.Name)
			}
		}
		if becameNotReady || (retry && observed.Status != corev1.ConditionTrue) {
			err := c.markPodsNotReady(ctx, node.Name)
			c.mu.Lock()
			if err != nil {
				c.log.Warn("mark pods not ready; will retry", "node", node.Name, "err", err)
				c.retryPods[node.Name] = true
			} else {
				delete(c.retryPods, node.Name)
			}
			c.mu.Unlock()
		} else if retry {
			c.mu.Lock()
			delete(c.retryPods, node.Name)
			c.mu.Unlock()
		}
	}
	c.mu.Lock()
	for name := range c.health {
		if !seen[name] {
			delete(c.health, name)
			delete(c.retryPods, name)
			for _, t := range c.tainters {
				t.remove(name)
			}
		}
	}
	c.mu.Unlock()
	c.handleDisruption(ctx, zoneConditions, nodes)
}

// updateHealth is upstream's tryUpdateNodeHealth: it refreshes the probe
// time when the Ready condition's heartbeat or the Lease changed and, once
// the grace period passed without either, writes every condition Unknown.
// It returns the Ready condition as observed and as it is now.
func (c *Controller) updateHealth(ctx context.Context, node *corev1.Node) (observed corev1.NodeCondition, current *corev1.NodeCondition, err error) {
	for attempt := 0; ; attempt++ {
		observed, current, err = c.tryUpdateHealth(ctx, node)
		if err == nil || attempt == 4 || ctx.Err() != nil {
			return observed, current, err
		}
		fresh, gerr := c.cfg.Client.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
		if gerr != nil {
			return observed, current, gerr
		}
		node = fresh
	}
}

func (c *Controller) tryUpdateHealth(ctx context.Context, node *corev1.Node) (corev1.NodeCondition, *corev1.NodeCondition, error) {
	now := c.now()
	c.mu.Lock()
	h := c.health[node.Name]
	var saved *corev1.NodeCondition
	var savedLease *coordinationv1.Lease
	if h != nil {
		saved, savedLease = h.ready, h.lease
	}
	cur := readyCondition(&node.Status)
	var observed corev1.NodeCondition
	grace := c.cfg.Timing.MonitorGracePeriod
	switch {
	case cur == nil:
		// Never posted: a fake Unknown condition from the creation time.
		observed = corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionUnknown,
			LastHeartbeatTime: node.CreationTimestamp, LastTransitionTime: node.CreationTimestamp}
		grace = c.cfg.Timing.StartupGracePeriod
		if h == nil {
			h = &health{probe: node.CreationTimestamp.Time, readyChangedAt: node.CreationTimestamp.Time}
		} else {
			h = &health{probe: h.probe, readyChangedAt: h.readyChangedAt, lease: h.lease}
		}
	default:
		observed = *cur
		switch {
		case h == nil, saved == nil:
			h = &health{probe: now, readyChangedAt: now, lease: savedLease}
		case !saved.LastHeartbeatTime.Equal(&cur.LastHeartbeatTime):
			changed := h.readyChangedAt
			if !saved.LastTransitionTime.Equal(&cur.LastTransitionTime) {
				changed = now
			}
			h = &health{probe: now, readyChangedAt: changed, lease: savedLease}
		default:
			h = &health{probe: h.probe, readyChangedAt: h.readyChangedAt, lease: savedLease}
		}
		rc := *cur
		h.ready = &rc
	}
	// A renewed Lease always counts as a heartbeat.
	if l, err := c.leases.Leases(LeaseNamespace).Get(node.Name); err == nil && l.Spec.RenewTime != nil {
		if savedLease == nil || savedLease.Spec.RenewTime == nil || savedLease.Spec.RenewTime.Before(l.Spec.RenewTime) {
			h.lease = l
			h.probe = now
		}
	}
	c.health[node.Name] = h
	probe := h.probe
	c.mu.Unlock()

	if !now.After(probe.Add(grace)) {
		return observed, cur, nil
	}
	// Neither Lease nor status was renewed within the grace period.
	ts := metav1.NewTime(now)
	for _, t := range []corev1.NodeConditionType{corev1.NodeReady, corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure} {
		found := false
		for i := range node.Status.Conditions {
			nc := &node.Status.Conditions[i]
			if nc.Type != t {
				continue
			}
			found = true
			if nc.Status != corev1.ConditionUnknown {
				nc.Status = corev1.ConditionUnknown
				nc.Reason = "NodeStatusUnknown"
				nc.Message = "Kubelet stopped posting node status."
				nc.LastTransitionTime = ts
			}
		}
		if !found {
			node.Status.Conditions = append(node.Status.Conditions, corev1.NodeCondition{Type: t, Status: corev1.ConditionUnknown,
				Reason: "NodeStatusNeverUpdated", Message: "Kubelet never posted node status.",
				LastHeartbeatTime: node.CreationTimestamp, LastTransitionTime: ts})
		}
	}
	cur = readyCondition(&node.Status)
	if cur.Status == observed.Status && cur.Reason == observed.Reason && cur.Message == observed.Message &&
		cur.LastTransitionTime.Equal(&observed.LastTransitionTime) {
		return observed, cur, nil
	}
	written, err := c.cfg.Client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
	if err != nil {
		return observed, cur, fmt.Errorf("set node %s Unknown: %w", node.Name, err)
	}
	c.log.Info("node stopped posting status", "node", node.Name, "lastProbe", probe.Format(time.RFC3339))
	c.mu.Lock()
	if h := c.health[node.Name]; h != nil {
		rc := *readyCondition(&written.Status)
		c.health[node.Name] = &health{ready: &rc, probe: h.probe, readyChangedAt: now, lease: h.lease}
	}
	c.mu.Unlock()
	return observed, readyCondition(&written.Status), nil
}

// markPodsNotReady is upstream's MarkPodsNotReady: the Ready condition of
// every pod on the node becomes False.
func (c *Controller) markPodsNotReady(ctx context.Context, node string) error {
	var firstErr error
	for _, p := range podsOnNode(c.pods, node) {
		var ready *corev1.PodCondition
		for i := range p.Status.Conditions {
			if p.Status.Conditions[i].Type == corev1.PodReady {
				ready = &p.Status.Conditions[i]
			}
		}
		if ready == nil || ready.Status == corev1.ConditionFalse {
			continue
		}
		upd := p.DeepCopy()
		for i := range upd.Status.Conditions {
			if upd.Status.Conditions[i].Type == corev1.PodReady {
				upd.Status.Conditions[i].Status = corev1.ConditionFalse
				upd.Status.Conditions[i].LastTransitionTime = metav1.NewTime(c.now())
			}
		}
		_, err := c.cfg.Client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if c.cfg.Recorder != nil {
			c.cfg.Recorder.Event(upd, corev1.EventTypeWarning, "NodeNotReady", "Node is not ready")
		}
	}
	return firstErr
}

// taintForEviction is upstream's processTaintBaseEviction: an unhealthy
// node is queued for its NoExecute taint (or has it swapped at once when
// it carries the other one); a healthy node loses both.
func (c *Controller) taintForEviction(ctx context.Context, node *corev1.Node, observed corev1.NodeCondition) {
	switch observed.Status {
	case corev1.ConditionFalse:
		if hasTaint(node.Spec.Taints, UnreachableTaint) {
			c.swap(ctx, node.Name, NotReadyTaint, UnreachableTaint)
			return
		}
		c.queueForTainting(node)
	case corev1.ConditionUnknown:
		if hasTaint(node.Spec.Taints, NotReadyTaint) {
			c.swap(ctx, node.Name, UnreachableTaint, NotReadyTaint)
			return
		}
		c.queueForTainting(node)
	case corev1.ConditionTrue:
		c.markReachable(ctx, node)
	}
}

func (c *Controller) swap(ctx context.Context, node string, add, remove corev1.Taint) {
	if err := swapTaints(ctx, c.cfg.Client, node, []corev1.Taint{add}, []corev1.Taint{remove}); ignoreNotFound(err) != nil {
		c.log.Warn("swap NoExecute taint; will retry", "node", node, "err", err)
	}
}

func (c *Controller) queueForTainting(node *corev1.Node) {
	if hasTaint(node.Spec.Taints, UnreachableTaint) || hasTaint(node.Spec.Taints, NotReadyTaint) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.tainters[zoneKey(node)]; t != nil {
		t.add(node.Name, node.UID)
	}
}

// markReachable removes the NoExecute taints of a healthy node.
func (c *Controller) markReachable(ctx context.Context, node *corev1.Node) {
	c.mu.Lock()
	if t := c.tainters[zoneKey(node)]; t != nil {
		t.remove(node.Name)
	}
	c.mu.Unlock()
	if !hasTaint(node.Spec.Taints, UnreachableTaint) && !hasTaint(node.Spec.Taints, NotReadyTaint) {
		return
	}
	if err := swapTaints(ctx, c.cfg.Client, node.Name, nil, []corev1.Taint{UnreachableTaint, NotReadyTaint}); ignoreNotFound(err) != nil {
		c.log.Warn("remove NoExecute taints; will retry", "node", node.Name, "err", err)
		return
	}
	c.log.Info("node is healthy again; NoExecute taints removed", "node", node.Name)
}

// noExecuteTaintingPass is upstream's doNoExecuteTaintingPass: each zone
// taints queued nodes as fast as its limiter allows.
func (c *Controller) noExecuteTaintingPass(ctx context.Context) {
	c.mu.Lock()
	zones := make([]*tainter, 0, len(c.tainters))
	for _, t := range c.tainters {
		zones = append(zones, t)
	}
	c.mu.Unlock()
	for _, t := range zones {
		t.try(&c.mu, func(name string, uid types.UID) bool {
			node, err := c.nodes.Get(name)
			if err != nil || node.UID != uid {
				return true // gone: drop it
			}
			ready := readyCondition(&node.Status)
			if ready == nil {
				return true
			}
			var add, remove corev1.Taint
			switch ready.Status {
			case corev1.ConditionFalse:
				add, remove = NotReadyTaint, UnreachableTaint
			case corev1.ConditionUnknown:
				add, remove = UnreachableTaint, NotReadyTaint
			default:
				return true
			}
			if err := swapTaints(ctx, c.cfg.Client, name, []corev1.Taint{add}, []corev1.Taint{remove}); ignoreNotFound(err) != nil {
				c.log.Warn("add NoExecute taint; will retry", "node", name, "err", err)
				return false
			}
			c.log.Info("node tainted for eviction", "node", name, "taint", add.Key)
			return true
		})
	}
}

// computeZoneState is upstream's ComputeZoneState.
func computeZoneState(conds []*corev1.NodeCondition, threshold float32) (int, zoneState) {
	ready, notReady := 0, 0
	for _, c := range conds {
		if c != nil && c.Status == corev1.ConditionTrue {
			ready++
		} else {
			notReady++
		}
	}
	switch {
	case ready == 0 && notReady > 0:
		return notReady, stateFullDisruption
	case notReady > 2 && float32(notReady)/float32(notReady+ready) >= threshold:
		return notReady, statePartialDisruption
	default:
		return notReady, stateNormal
	}
}

// handleDisruption is upstream's handleDisruption: each zone's tainting
// rate follows its state; when every zone is fully disrupted (the control
// plane more likely lost the nodes than the nodes died) nothing is
// tainted and the NoExecute taints come off, and on the way back every
// node gets a fresh grace period.
func (c *Controller) handleDisruption(ctx context.Context, zoneConditions map[string][]*corev1.NodeCondition, nodes []*corev1.Node) {
	newStates := map[string]zoneState{}
	allFully := true
	for zone, conds := range zoneConditions {
		_, st := computeZoneState(conds, c.cfg.Timing.UnhealthyZoneThreshold)
		newStates[zone] = st
		if st != stateFullDisruption {
			allFully = false
		}
	}
	c.mu.Lock()
	wasAllFully := true
	for zone, st := range c.zoneStates {
		if _, ok := zoneConditions[zone]; !ok {
			delete(c.zoneStates, zone)
			delete(c.tainters, zone)
			continue
		}
		if st != stateFullDisruption {
			wasAllFully = false
		}
	}
	if len(newStates) == 0 {
		allFully = false
	}
	switch {
	case allFully && wasAllFully:
		c.mu.Unlock()
		return
	case allFully:
		c.log.Warn("every zone is fully disrupted: stopping NoExecute tainting and removing the taints")
		for zone := range c.zoneStates {
			c.tainters[zone].setRate(0)
			c.zoneStates[zone] = stateFullDisruption
		}
		c.mu.Unlock()
		for _, n := range nodes {
			c.markReachable(ctx, n)
		}
		return
	case wasAllFully:
		c.log.Info("leaving full disruption: every node gets a fresh grace period")
		now := c.now()
		for _, h := range c.health {
			h.probe = now
		}
		for zone := range c.zoneStates {
			c.setZoneRate(zone, len(zoneConditions[zone]), newStates[zone])
			c.zoneStates[zone] = newStates[zone]
		}
		c.mu.Unlock()
		return
	}
	for zone, st := range c.zoneStates {
		if st == newStates[zone] {
			continue
		}
		c.log.Info("zone state changed", "zone", zone, "from", st, "to", newStates[zone])
		c.setZoneRate(zone, len(zoneConditions[zone]), newStates[zone])
		c.zoneStates[zone] = newStates[zone]
	}
	c.mu.Unlock()
}

// setZoneRate is upstream's setLimiterInZone; c.mu is held.
func (c *Controller) setZoneRate(zone string, size int, st zoneState) {
	t := c.tainters[zone]
	if t == nil {
		return
	}
	switch st {
	case stateNormal, stateFullDisruption:
		t.setRate(c.cfg.Timing.EvictionRate)
	case statePartialDisruption:
		if size > c.cfg.Timing.LargeClusterSizeThreshold {
			t.setRate(c.cfg.Timing.SecondaryEvictionRate)
		} else {
			t.setRate(0)
		}
	}
}

// reconcileNoSchedule is upstream's doNoScheduleTaintingPass for one node.
func (c *Controller) reconcileNoSchedule(ctx context.Context, name string) (controllers.Result, error) {
	node, err := c.nodes.Get(name)
	if apierrors.IsNotFound(err) {
		return controllers.Result{}, nil
	}
	if err != nil {
		return controllers.Result{}, err
	}
	want := map[string]bool{}
	for _, cond := range node.Status.Conditions {
		if key, ok := conditionTaints[cond.Type][cond.Status]; ok {
			want[key] = true
		}
	}
	if node.Spec.Unschedulable {
		want[corev1.TaintNodeUnschedulable] = true
	}
	have := map[string]bool{}
	for _, t := range node.Spec.Taints {
		if t.Effect == corev1.TaintEffectNoSchedule && noScheduleKeys[t.Key] {
			have[t.Key] = true
		}
	}
	var add, remove []corev1.Taint
	for k := range want {
		if !have[k] {
			add = append(add, corev1.Taint{Key: k, Effect: corev1.TaintEffectNoSchedule})
		}
	}
	for k := range have {
		if !want[k] {
			remove = append(remove, corev1.Taint{Key: k, Effect: corev1.TaintEffectNoSchedule})
		}
	}
	if len(add) == 0 && len(remove) == 0 {
		return controllers.Result{}, nil
	}
	sort.Slice(add, func(i, j int) bool { return add[i].Key < add[j].Key })
	if err := swapTaints(ctx, c.cfg.Client, name, add, remove); ignoreNotFound(err) != nil {
		return controllers.Result{}, fmt.Errorf("NoSchedule taints of node %s: %w", name, err)
	}
	return controllers.Result{}, nil
}

// tainter is one zone's queue of nodes waiting for a NoExecute taint and
// its token bucket (burst 1), upstream's RateLimitedTimedQueue.
type tainter struct {
	rate    float32
	limiter flowcontrol.PassiveRateLimiter
	queue   []queued
}

type queued struct {
	name string
	uid  types.UID
	at   time.Time // not before
}

func newTainter(rate float32) *tainter {
	t := &tainter{}
	t.setRate(rate)
	return t
}

func (t *tainter) setRate(rate float32) {
	if t.limiter != nil && rate == t.rate {
		return
	}
	t.rate = rate
	if rate <= 0 {
		t.limiter = nil
		return
	}
	t.limiter = flowcontrol.NewTokenBucketPassiveRateLimiter(rate, 1)
}

func (t *tainter) add(name string, uid types.UID) {
	for _, q := range t.queue {
		if q.name == name {
			return
		}
	}
	t.queue = append(t.queue, queued{name: name, uid: uid})
}

func (t *tainter) remove(name string) {
	for i, q := range t.queue {
		if q.name == name {
			t.queue = append(t.queue[:i], t.queue[i+1:]...)
			return
		}
	}
}

// try hands queued nodes to fn, in order, while the limiter allows; a
// node fn fails on is retried after a second. mu guards the queue and is
// not held while fn runs.
func (t *tainter) try(mu *sync.Mutex, fn func(string, types.UID) bool) {
	for {
		mu.Lock()
		now, i := time.Now(), 0
		for i < len(t.queue) && now.Before(t.queue[i].at) {
			i++
		}
		if i == len(t.queue) || t.limiter == nil || !t.limiter.TryAccept() {
			mu.Unlock()
			return
		}
		q := t.queue[i]
		t.queue = append(t.queue[:i], t.queue[i+1:]...)
		mu.Unlock()
		if !fn(q.name, q.uid) {
			mu.Lock()
			q.at = time.Now().Add(time.Second)
			t.queue = append(t.queue, q)
			mu.Unlock()
			return
		}
	}
}
