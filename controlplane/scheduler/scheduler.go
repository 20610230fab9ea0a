// Package scheduler is Skiff's kube-scheduler: it watches pending pods,
// picks a node for each through the plugins of the pod's profile
// (spec.schedulerName) and binds it through pods/binding. Pods naming a
// scheduler without a profile here are left alone, so users can run their
// own schedulers beside it.
//
// The parts: a scheduling queue (activeQ, backoffQ, unschedulable pool), a
// cache of nodes and assumed pods fed by informers, per-cycle snapshots,
// the framework (package framework) and the plugins (package plugins/...).
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"encoding/json"
	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	schedlisters "k8s.io/client-go/listers/scheduling/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// Options configures a Scheduler.
type Options struct {
	// Client talks to the API server.
	Client kubernetes.Interface
	// Config is the parsed --config (nil: the default profile).
	Config *Configuration
	// Registry adds out-of-tree plugins to the ones registered in-process.
	Registry framework.Registry
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// ProcessMetrics adds Go runtime and process metrics to /metrics.
	ProcessMetrics bool
}

// Scheduler schedules pods.
type Scheduler struct {
	client    kubernetes.Interface
	cfg       *Configuration
	log       *slog.Logger
	factory   informers.SharedInformerFactory
	podLister corelisters.PodLister
	pcLister  schedlisters.PriorityClassLister
	profiles  map[string]*framework.Framework
	percent   map[string]int32
	cache     *schedCache
	snapshot  *Snapshot
	queue     *schedulingQueue
	metrics   *metrics
	broadcast record.EventBroadcaster
	parallel  framework.Parallelizer

	nextStartNodeIndex int
	bindings           sync.WaitGroup
	started            atomic.Bool
}

// New builds a scheduler; Run starts it.
func New(opts Options) (*Scheduler, error) {
	if opts.Client == nil {
		return nil, errors.New("scheduler: Client is required")
	}
	cfg := opts.Config
	if cfg == nil {
		cfg = &Configuration{}
	}
	if err := cfg.Complete(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "scheduler")
	reg := framework.Registered()
	if err := reg.Merge(opts.Registry); err != nil {
		return nil, err
	}
	parallelism := framework.DefaultParallelism
	if cfg.Parallelism != nil {
		parallelism = int(*cfg.Parallelism)
	}
	s := &Scheduler{
		client:   opts.Client,
		cfg:      cfg,
		log:      log,
		profiles: map[string]*framework.Framework{},
		percent:  map[string]int32{},
		cache:    newCache(),
		snapshot: NewSnapshot(),
		parallel: framework.NewParallelizer(parallelism),
	}
	s.factory = informers.NewSharedInformerFactory(opts.Client, 0)
	s.pcLister = s.factory.Scheduling().V1().PriorityClasses().Lister()
	s.broadcast = record.NewBroadcaster(record.WithContext(context.Background()))
	nom := newNominator()
	for _, p := range cfg.Profiles {
		spec := p.ProfileSpec()
		fwk, err := framework.New(reg, spec, framework.Deps{
			Client:          opts.Client,
			InformerFactory: s.factory,
			Snapshot:        s.snapshot,
			Recorder:        s.broadcast.NewRecorder(scheme.Scheme, corev1.EventSource{Component: p.SchedulerName}),
			Parallelizer:    s.parallel,
			Logger:          log.With("profile", p.SchedulerName),
			PodPriority:     s.podPriority,
			Nominator:       nom,
		})
		if err != nil {
			return nil, fmt.Errorf("scheduler: %w", err)
		}
		s.profiles[p.SchedulerName] = fwk
		pct := int32(0)
		if cfg.PercentageOfNodesToScore != nil {
			pct = *cfg.PercentageOfNodesToScore
		}
		if p.PercentageOfNodesToScore != nil {
			pct = *p.PercentageOfNodesToScore
		}
		s.percent[p.SchedulerName] = pct
	}
	var first *framework.Framework
	events := map[string]map[string]sets.Set[framework.ClusterEvent]{}
	for _, p := range cfg.Profiles {
		fwk := s.profiles[p.SchedulerName]
		if first == nil {
			first = fwk
		} else if first.QueueSort().Name() != fwk.QueueSort().Name() {
			return nil, fmt.Errorf("scheduler: all profiles must use the same queueSort plugin (%q and %q)", first.QueueSort().Name(), fwk.QueueSort().Name())
		}
		events[p.SchedulerName] = fwk.PluginEvents()
	}
	ib, mb := cfg.backoff()
	s.queue = newSchedulingQueue(first.QueueSort().Less, ib, mb, events)
	s.queue.nominator = nom
	s.metrics = newMetrics(s.queue, opts.ProcessMetrics)
	return s, nil
}

// MetricsHandler serves the scheduler's Prometheus metrics.
func (s *Scheduler) MetricsHandler() http.Handler { return s.metrics.handler() }

// Profiles lists the scheduler names served.
func (s *Scheduler) Profiles() []string {
	var out []string
	for name := range s.profiles {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// podPriority resolves a pod's priority: spec.priority, else its
// PriorityClass's value, else the global default class, else 0.
func (s *Scheduler) podPriority(pod *corev1.Pod) int32 {
	if pod.Spec.Priority != nil {
		return *pod.Spec.Priority
	}
	if name := pod.Spec.PriorityClassName; name != "" {
		if pc, err := s.pcLister.Get(name); err == nil {
			return pc.Value
		}
		return 0
	}
	if pcs, err := s.pcLister.List(labels.Everything()); err == nil {
		for _, pc := range pcs {
			if pc.GlobalDefault {
				return pc.Value
			}
		}
	}
	return 0
}

func (s *Scheduler) responsible(pod *corev1.Pod) bool {
	_, ok := s.profiles[pod.Spec.SchedulerName]
	return ok
}

func assigned(pod *corev1.Pod) bool { return pod.Spec.NodeName != "" }

func terminated(pod *corev1.Pod) bool {
	return pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}

// Run starts the informers and schedules pods until ctx ends.
func (s *Scheduler) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("scheduler: already running")
	}
	s.broadcast.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: s.client.CoreV1().Events("")})
	defer s.broadcast.Shutdown()
	podFactory := informers.NewSharedInformerFactoryWithOptions(s.client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.AndSelectors(
			fields.OneTermNotEqualSelector("status.phase", string(corev1.PodSucceeded)),
			fields.OneTermNotEqualSelector("status.phase", string(corev1.PodFailed)),
		).String()
	}))
	podInf := podFactory.Core().V1().Pods()
	s.podLister = podInf.Lister()
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    s.onPodAdd,
		UpdateFunc: s.onPodUpdate,
		DeleteFunc: s.onPodDelete,
	}); err != nil {
		return fmt.Errorf("scheduler: pod handler: %w", err)
	}
	nodeInf := s.factory.Core().V1().Nodes().Informer()
	if _, err := nodeInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if n, ok := obj.(*corev1.Node); ok {
				s.cache.AddNode(n)
				s.queue.MoveAllToActiveOrBackoff(framework.EventNodeAdd)
			}
		},
		UpdateFunc: func(oldObj, obj any) {
			old, ok1 := oldObj.(*corev1.Node)
			n, ok2 := obj.(*corev1.Node)
			if !ok1 || !ok2 {
				return
			}
			s.cache.AddNode(n)
			if nodeSchedulingChanged(old, n) {
				s.queue.MoveAllToActiveOrBackoff(framework.EventNodeUpdate)
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if n, ok := obj.(*corev1.Node); ok {
				s.cache.RemoveNode(n.Name)
			}
		},
	}); err != nil {
		return fmt.Errorf("scheduler: node handler: %w", err)
	}
	s.factory.Scheduling().V1().PriorityClasses().Informer()
	if err := s.watchStorage(); err != nil {
		return err
	}
	s.factory.Start(ctx.Done())
	podFactory.Start(ctx.Done())
	defer podFactory.Shutdown()
	defer s.factory.Shutdown()
	for typ, ok := range s.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("scheduler: %v informer did not sync", typ)
		}
	}
	if !cache.WaitForCacheSync(ctx.Done(), podInf.Informer().HasSynced) {
		return errors.New("scheduler: pod informer did not sync")
	}
	s.log.Info("scheduler started", "profiles", s.Profiles())
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				s.queue.Close()
				return
			case <-t.C:
				s.queue.flush()
			}
		}
	}()
	for {
		qp := s.queue.Pop()
		if qp == nil || ctx.Err() != nil {
			break
		}
		s.scheduleOne(ctx, qp)
	}
	s.bindings.Wait()
	return nil
}

func nodeSchedulingChanged(old, n *corev1.Node) bool {
	if old.Spec.Unschedulable != n.Spec.Unschedulable || !labels.Equals(old.Labels, n.Labels) {
		return true
	}
	if len(old.Spec.Taints) != len(n.Spec.Taints) {
		return true
	}
	for i := range old.Spec.Taints {
		if !old.Spec.Taints[i].MatchTaint(&n.Spec.Taints[i]) || old.Spec.Taints[i].Value != n.Spec.Taints[i].Value {
			return true
		}
	}
	if len(old.Status.Allocatable) != len(n.Status.Allocatable) {
		return true
	}
	for k, v := range n.Status.Allocatable {
		if o, ok := old.Status.Allocatable[k]; !ok || o.Cmp(v) != 0 {
			return true
		}
	}
	return len(old.Status.Images) != len(n.Status.Images)
}

func (s *Scheduler) onPodAdd(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	switch {
	case assigned(pod):
		s.cache.AddPod(pod)
		s.queue.MoveAllToActiveOrBackoff(framework.EventAssignedPodAdd)
	case !terminated(pod) && s.responsible(pod):
		s.queue.Add(pod)
	}
}

func (s *Scheduler) onPodUpdate(oldObj, obj any) {
	old, ok1 := oldObj.(*corev1.Pod)
	pod, ok2 := obj.(*corev1.Pod)
	if !ok1 || !ok2 {
		return
	}
	switch {
	case assigned(pod) && !assigned(old):
		// Bound: leaves the queue, enters the cache.
		s.queue.Delete(old)
		s.cache.AddPod(pod)
		s.queue.MoveAllToActiveOrBackoff(framework.EventAssignedPodAdd)
	case assigned(pod):
		if terminated(pod) {
			s.cache.RemovePod(pod)
			s.queue.MoveAllToActiveOrBackoff(framework.EventAssignedPodDelete)
			return
		}
		s.cache.UpdatePod(pod)
		if !labels.Equals(old.Labels, pod.Labels) {
			s.queue.MoveAllToActiveOrBackoff(framework.EventAssignedPodUpdate)
		}
	case terminated(pod) || !s.responsible(pod):
		s.queue.Delete(pod)
	default:
		if s.cache.IsAssumed(pod) {
			return
		}
		s.queue.Update(old, pod)
	}
}

func (s *Scheduler) onPodDelete(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if assigned(pod) {
		s.cache.RemovePod(pod)
		s.queue.MoveAllToActiveOrBackoff(framework.EventAssignedPodDelete)
		return
	}
	s.queue.Delete(pod)
	if fwk := s.profiles[pod.Spec.SchedulerName]; fwk != nil {
		if wp := fwk.GetWaitingPod(pod.UID); wp != nil {
			wp.Reject("", "removed")
		}
	}
}

// FitError says why no node fits a pod.
type FitError struct {
	Pod           *corev1.Pod
	NumAllNodes   int
	Statuses      *framework.NodeToStatus
	PreFilterMsg  string
	PostFilterMsg string
	Plugins       sets.Set[string]
}

// NoNodeAvailableMsg starts every FitError message.
const NoNodeAvailableMsg = "0/%v nodes are available"

// Error renders upstream's message: "0/3 nodes are available: 1 Insufficient
// cpu, 2 node(s) had untolerated taint {k: v}. preemption: ...".
func (f *FitError) Error() string {
	msg := fmt.Sprintf(NoNodeAvailableMsg+":", f.NumAllNodes)
	if f.PreFilterMsg != "" {
		msg += fmt.Sprintf(" %v.", f.PreFilterMsg)
	} else if f.Statuses != nil {
		counts := map[string]int{}
		f.Statuses.ForEach(func(_ string, st *framework.Status) {
			for _, r := range st.Reasons() {
				counts[r]++
			}
		})
		var parts []string
		for r, n := range counts {
			parts = append(parts, fmt.Sprintf("%v %v", n, r))
		}
		sort.Strings(parts)
		if len(parts) > 0 {
			msg += fmt.Sprintf(" %v.", strings.Join(parts, ", "))
		}
	}
	if f.PostFilterMsg != "" {
		msg += fmt.Sprintf(" %v.", f.PostFilterMsg)
	}
	return msg
}

// ErrNoNodesAvailable is upstream's error when the cluster has no nodes.
var ErrNoNodesAvailable = errors.New("no nodes available to schedule pods")

type scheduleResult struct {
	host      string
	evaluated int
	feasible  int
}

// scheduleOne runs one scheduling cycle and starts the binding cycle.
func (s *Scheduler) scheduleOne(ctx context.Context, qp *framework.QueuedPodInfo) {
	pod := qp.Pod
	fwk := s.profiles[pod.Spec.SchedulerName]
	if fwk == nil || pod.DeletionTimestamp != nil || s.cache.IsAssumed(pod) {
		return
	}
	start := time.Now()
	cycle := s.queue.SchedulingCycle()
	state := framework.NewCycleState()
	s.cache.UpdateSnapshot(s.snapshot)
	res, err := s.schedulePod(ctx, fwk, state, pod)
	if err != nil {
		nominated := ""
		var fe *FitError
		if errors.As(err, &fe) {
			qp.UnschedulablePlugins = fe.Plugins
			if fwk.HasPostFilter() {
				pr, st := fwk.RunPostFilterPlugins(ctx, state, pod, fe.Statuses)
				if st.IsSuccess() && pr != nil {
					nominated = pr.NominatedNodeName
				}
				if st.Code() == framework.Error {
					s.log.Error("postfilter failed", "pod", klog(pod), "err", st.AsError())
				} else if !st.IsSuccess() || pr != nil {
					fe.PostFilterMsg = st.Message()
				}
			}
			s.metrics.attempts.WithLabelValues("unschedulable", fwk.ProfileName()).Inc()
			s.metrics.attemptDuration.WithLabelValues("unschedulable", fwk.ProfileName()).Observe(time.Since(start).Seconds())
		} else {
			qp.UnschedulablePlugins = nil
			s.metrics.attempts.WithLabelValues("error", fwk.ProfileName()).Inc()
			s.metrics.attemptDuration.WithLabelValues("error", fwk.ProfileName()).Observe(time.Since(start).Seconds())
		}
		s.handleFailure(ctx, fwk, qp, err, nominated, cycle)
		return
	}
	assumed := pod.DeepCopy()
	assumed.Spec.NodeName = res.host
	if err := s.cache.AssumePod(assumed); err != nil {
		s.handleFailure(ctx, fwk, qp, err, "", cycle)
		return
	}
	s.queue.nominator.delete(pod)
	if st := fwk.RunReservePluginsReserve(ctx, state, assumed, res.host); !st.IsSuccess() {
		fwk.RunReservePluginsUnreserve(ctx, state, assumed, res.host)
		s.cache.ForgetPod(assumed)
		s.failStatus(ctx, fwk, qp, st, cycle)
		return
	}
	if st := fwk.RunPermitPlugins(ctx, state, assumed, res.host); !st.IsSuccess() && !st.IsWait() {
		fwk.RunReservePluginsUnreserve(ctx, state, assumed, res.host)
		s.cache.ForgetPod(assumed)
		s.failStatus(ctx, fwk, qp, st, cycle)
		return
	}
	s.bindings.Add(1)
	go func() {
		defer s.bindings.Done()
		s.bindingCycle(ctx, fwk, state, qp, assumed, res.host, start, cycle)
	}()
}

func (s *Scheduler) failStatus(ctx context.Context, fwk *framework.Framework, qp *framework.QueuedPodInfo, st *framework.Status, cycle int64) {
	if st.IsRejected() {
		qp.UnschedulablePlugins = sets.New(st.Plugin())
		s.handleFailure(ctx, fwk, qp, &rejected{st}, "", cycle)
		return
	}
	qp.UnschedulablePlugins = nil
	s.handleFailure(ctx, fwk, qp, st.AsError(), "", cycle)
}

type rejected struct{ st *framework.Status }

func (r *rejected) Error() string { return r.st.Message() }

func (s *Scheduler) bindingCycle(ctx context.Context, fwk *framework.Framework, state *framework.CycleState, qp *framework.QueuedPodInfo, assumed *corev1.Pod, host string, start time.Time, cycle int64) {
	fail := func(st *framework.Status) {
		fwk.RunReservePluginsUnreserve(ctx, state, assumed, host)
		s.cache.ForgetPod(assumed)
		s.queue.MoveAllToActiveOrBackoff(framework.EventAssignedPodDelete)
		s.metrics.attempts.WithLabelValues("error", fwk.ProfileName()).Inc()
		s.failStatus(ctx, fwk, qp, st, cycle)
	}
	if st := fwk.WaitOnPermit(ctx, assumed); !st.IsSuccess() {
		fail(st)
		return
	}
	if st := fwk.RunPreBindPlugins(ctx, state, assumed, host); !st.IsSuccess() {
		fail(st)
		return
	}
	if st := fwk.RunBindPlugins(ctx, state, assumed, host); !st.IsSuccess() {
		fail(st)
		return
	}
	now := time.Now()
	s.metrics.attempts.WithLabelValues("scheduled", fwk.ProfileName()).Inc()
	s.metrics.attemptDuration.WithLabelValues("scheduled", fwk.ProfileName()).Observe(now.Sub(start).Seconds())
	s.metrics.e2eDuration.WithLabelValues("scheduled", fwk.ProfileName()).Observe(now.Sub(qp.Timestamp).Seconds())
	if qp.InitialAttemptTimestamp != nil {
		s.metrics.sliDuration.WithLabelValues(fmt.Sprint(min(qp.Attempts, 16))).Observe(now.Sub(*qp.InitialAttemptTimestamp).Seconds())
	}
	fwk.EventRecorder().Eventf(assumed, corev1.EventTypeNormal, "Scheduled", "Successfully assigned %v/%v to %v", assumed.Namespace, assumed.Name, host)
	fwk.RunPostBindPlugins(ctx, state, assumed, host)
}

// handleFailure re-queues the pod, records the FailedScheduling event and
// sets PodScheduled=False (and a nomination) on the pod.
func (s *Scheduler) handleFailure(ctx context.Context, fwk *framework.Framework, qp *framework.QueuedPodInfo, err error, nominated string, cycle int64) {
	pod := qp.Pod
	reason := corev1.PodReasonUnschedulable
	var fe *FitError
	var rj *rejected
	if !errors.As(err, &fe) && !errors.As(err, &rj) {
		reason = corev1.PodReasonSchedulerError
		if !errors.Is(err, ErrNoNodesAvailable) {
			s.log.Error("scheduling attempt failed", "pod", klog(pod), "err", err)
		}
	}
	cur, gerr := s.podLister.Pods(pod.Namespace).Get(pod.Name)
	if gerr != nil || cur.UID != pod.UID {
		return // deleted meanwhile
	}
	if assigned(cur) {
		return
	}
	if nominated != "" {
		s.queue.nominator.add(framework.NewPodInfo(cur), nominated)
	}
	qp.PodInfo = framework.NewPodInfo(cur)
	s.queue.AddUnschedulable(qp, cycle)
	msg := truncate(err.Error(), 1024)
	fwk.EventRecorder().Event(cur, corev1.EventTypeWarning, "FailedScheduling", msg)
	s.bindings.Add(1)
	go func() {
		defer s.bindings.Done()
		if perr := s.patchScheduledCondition(ctx, cur, reason, msg, nominated); perr != nil && ctx.Err() == nil && !apierrors.IsNotFound(perr) {
			s.log.Warn("update pod status", "pod", klog(cur), "err", perr)
		}
	}()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// patchScheduledCondition sets PodScheduled=False and the nominated node
// with a strategic merge patch on pods/status, when they changed.
func (s *Scheduler) patchScheduledCondition(ctx context.Context, pod *corev1.Pod, reason, msg, nominated string) error {
	var cond *corev1.PodCondition
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == corev1.PodScheduled {
			cond = &pod.Status.Conditions[i]
		}
	}
	nnChanged := nominated != "" && nominated != pod.Status.NominatedNodeName
	if cond != nil && cond.Status == corev1.ConditionFalse && cond.Reason == reason && cond.Message == msg && !nnChanged {
		return nil
	}
	status := map[string]any{
		"conditions": []any{map[string]any{
			"type": string(corev1.PodScheduled), "status": string(corev1.ConditionFalse),
			"reason": reason, "message": msg, "lastProbeTime": nil,
			"lastTransitionTime": metav1.Now().UTC().Format(time.RFC3339),
		}},
	}
	if nnChanged {
		status["nominatedNodeName"] = nominated
	}
	body, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return err
	}
	_, err = s.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, body, metav1.PatchOptions{}, "status")
	return err
}

func klog(p *corev1.Pod) string { return p.Namespace + "/" + p.Name }

// schedulePod finds the best node for pod.
func (s *Scheduler) schedulePod(ctx context.Context, fwk *framework.Framework, state *framework.CycleState, pod *corev1.Pod) (scheduleResult, error) {
	all := s.snapshot.List()
	if len(all) == 0 {
		return scheduleResult{}, ErrNoNodesAvailable
	}
	feasible, fe, err := s.findNodesThatFit(ctx, fwk, state, pod)
	if err != nil {
		return scheduleResult{}, err
	}
	if len(feasible) == 0 {
		return scheduleResult{}, fe
	}
	evaluated := fe.Statuses.Len() + len(feasible)
	if len(feasible) == 1 {
		return scheduleResult{host: feasible[0].Node().Name, evaluated: evaluated, feasible: 1}, nil
	}
	if st := fwk.RunPreScorePlugins(ctx, state, pod, feasible); !st.IsSuccess() {
		return scheduleResult{}, st.AsError()
	}
	scores, st := fwk.RunScorePlugins(ctx, state, pod, feasible)
	if !st.IsSuccess() {
		return scheduleResult{}, st.AsError()
	}
	return scheduleResult{host: selectHost(scores), evaluated: evaluated, feasible: len(feasible)}, nil
}

// selectHost picks the highest total score, breaking ties at random.
func selectHost(scores []framework.NodeScore) string {
	best, ties := scores[0], 1
	for _, sc := range scores[1:] {
		switch {
		case sc.Score > best.Score:
			best, ties = sc, 1
		case sc.Score == best.Score:
			ties++
			if rand.IntN(ties) == 0 {
				best = sc
			}
		}
	}
	return best.Name
}

// numFeasibleNodesToFind is upstream's adaptive sampling: all nodes under
// 100; otherwise percentage (default 50% minus 1% per 125 nodes, at least
// 5%) of the nodes, at least 100.
func numFeasibleNodesToFind(percentage int32, numAll int) int {
	const minFeasible, minPercentage = 100, 5
	if numAll < minFeasible || percentage >= 100 {
		return numAll
	}
	p := int(percentage)
	if p == 0 {
		p = 50 - numAll/125
		if p < minPercentage {
			p = minPercentage
		}
	}
	n := numAll * p / 100
	if n < minFeasible {
		return minFeasible
	}
	return n
}

func (s *Scheduler) findNodesThatFit(ctx context.Context, fwk *framework.Framework, state *framework.CycleState, pod *corev1.Pod) ([]*framework.NodeInfo, *FitError, error) {
	all := s.snapshot.List()
	fe := &FitError{Pod: pod, NumAllNodes: len(all), Statuses: framework.NewNodeToStatus(nil), Plugins: sets.New[string]()}
	pre, st, rejectors := fwk.RunPreFilterPlugins(ctx, state, pod)
	if !st.IsSuccess() {
		if !st.IsRejected() {
			return nil, nil, st.AsError()
		}
		for _, ni := range all {
			fe.Statuses.Set(ni.Node().Name, st)
		}
		fe.PreFilterMsg = st.Message()
		fe.Plugins = rejectors
		return nil, fe, nil
	}
	// A nominated node (from an earlier preemption) is tried first.
	if nn := pod.Status.NominatedNodeName; nn != "" {
		if ni, err := s.snapshot.Get(nn); err == nil {
			if st := fwk.RunFilterPluginsWithNominatedPods(ctx, state, pod, ni); st.IsSuccess() {
				return []*framework.NodeInfo{ni}, fe, nil
			}
		}
	}
	nodes := all
	if !pre.AllNodes() {
		nodes = make([]*framework.NodeInfo, 0, pre.NodeNames.Len())
		for _, ni := range all {
			if pre.NodeNames.Has(ni.Node().Name) {
				nodes = append(nodes, ni)
			} else {
				fe.Statuses.Set(ni.Node().Name, framework.NewStatus(framework.UnschedulableAndUnresolvable, "node(s) didn't satisfy plugin(s) [PreFilter result]"))
			}
		}
	}
	toFind := numFeasibleNodesToFind(s.percent[fwk.ProfileName()], len(nodes))
	feasible := make([]*framework.NodeInfo, toFind)
	var found, failed atomic.Int32
	var errMu sync.Mutex
	var firstErr error
	var pluginsMu sync.Mutex
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := s.nextStartNodeIndex
	if start >= len(nodes) {
		start = 0
	}
	fwk.Parallelizer().Until(cctx, len(nodes), func(i int) {
		ni := nodes[(start+i)%len(nodes)]
		st := fwk.RunFilterPluginsWithNominatedPods(cctx, state, pod, ni)
		if st.IsSuccess() {
			n := found.Add(1)
			if int(n) > toFind {
				cancel()
				found.Add(-1)
				return
			}
			feasible[n-1] = ni
			return
		}
		if !st.IsRejected() {
			errMu.Lock()
			if firstErr == nil {
				firstErr = st.AsError()
			}
			errMu.Unlock()
			cancel()
			return
		}
		failed.Add(1)
		fe.Statuses.Set(ni.Node().Name, st)
		pluginsMu.Lock()
		fe.Plugins.Insert(st.Plugin())
		pluginsMu.Unlock()
	})
	if firstErr != nil {
		return nil, nil, firstErr
	}
	processed := int(found.Load()) + int(failed.Load())
	if len(nodes) > 0 {
		s.nextStartNodeIndex = (start + processed) % len(nodes)
	}
	return feasible[:found.Load()], fe, nil
}

// watchStorage requeues pods rejected for their volumes when claims,
// volumes or storage classes change.
func (s *Scheduler) watchStorage() error {
	on := func(ev framework.ClusterEvent) cache.ResourceEventHandlerFuncs {
		move := func() { s.queue.MoveAllToActiveOrBackoff(ev) }
		return cache.ResourceEventHandlerFuncs{AddFunc: func(any) { move() }, UpdateFunc: func(any, any) { move() }}
	}
	for inf, ev := range map[cache.SharedIndexInformer]framework.ClusterEvent{
		s.factory.Core().V1().PersistentVolumes().Informer():       framework.EventPersistentVolumeChange,
		s.factory.Core().V1().PersistentVolumeClaims().Informer():  framework.EventPersistentVolumeClaimChange,
		s.factory.Storage().V1().StorageClasses().Informer():       framework.EventStorageClassChange,
		s.factory.Storage().V1().CSIStorageCapacities().Informer(): framework.EventCSIStorageCapacityChange,
		s.factory.Storage().V1().CSIDrivers().Informer():           framework.EventCSIStorageCapacityChange,
	} {
		if _, err := inf.AddEventHandler(on(ev)); err != nil {
			return fmt.Errorf("scheduler: storage handler: %w", err)
		}
	}
	return nil
}
