// Package job is the Job controller: it runs a Job's pods to
// spec.completions (NonIndexed or Indexed) with spec.parallelism at once,
// retries failures up to spec.backoffLimit with exponential backoff, applies
// the pod failure policy and activeDeadlineSeconds, tracks every finished
// pod exactly once through the batch.kubernetes.io/job-tracking finalizer
// and status.uncountedTerminatedPods, and reports status and conditions as
// upstream. See README.md.
package job

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/internal/podutil"
	"github.com/skiffhq/skiff/controlplane/controllers/replicaset"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
)

// Name is the controller's upstream name.
const Name = "job-controller"

// Event reasons, as upstream.
const (
	SuccessfulCreate = "SuccessfulCreate"
	FailedCreate     = "FailedCreate"
	SuccessfulDelete = "SuccessfulDelete"
	FailedDelete     = "FailedDelete"
	Completed        = "Completed"
	Suspended        = "Suspended"
	Resumed          = "Resumed"
)

var gvk = batchv1.SchemeGroupVersion.WithKind("Job")

// Config is what the controller needs.
type Config struct {
	Client    kubernetes.Interface
	Informers informers.SharedInformerFactory
	Recorder  record.EventRecorder
	Logger    *slog.Logger
	// Clock drives deadlines and backoff (default: the real clock).
	Clock clock.WithTicker
	// PodFailureBackoff is the first delay before replacing a failed pod
	// (default 10s, doubling per consecutive failure up to
	// MaxPodFailureBackoff, default 10m).
	PodFailureBackoff, MaxPodFailureBackoff time.Duration
}

// Controller runs Jobs.
type Controller struct {
	client  kubernetes.Interface
	jobs    batchlisters.JobLister
	jobInf  cache.SharedIndexInformer
	pods    corelisters.PodLister
	podInf  cache.SharedIndexInformer
	rec     record.EventRecorder
	log     *slog.Logger
	queue   workqueue.TypedRateLimitingInterface[string]
	clock   clock.WithTicker
	exp     *replicaset.Expectations
	fin     *finalizerExpectations
	backoff *backoffStore
	written *writtenVersions
	base    time.Duration
	limit   time.Duration
}

var _ controllers.Controller = (*Controller)(nil)

// New returns the Job controller with its informer handlers registered.
func New(cfg Config) (*Controller, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.PodFailureBackoff <= 0 {
		cfg.PodFailureBackoff = DefaultPodFailureBackoff
	}
	if cfg.MaxPodFailureBackoff <= 0 {
		cfg.MaxPodFailureBackoff = DefaultMaxPodFailureBackoff
	}
	jobs := cfg.Informers.Batch().V1().Jobs()
	pods := cfg.Informers.Core().V1().Pods()
	c := &Controller{
		client: cfg.Client, jobs: jobs.Lister(), jobInf: jobs.Informer(), pods: pods.Lister(), podInf: pods.Informer(),
		rec: cfg.Recorder, log: cfg.Logger.With("component", Name), clock: cfg.Clock,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "job", Clock: cfg.Clock}),
		exp: replicaset.NewExpectations(), fin: &finalizerExpectations{m: map[string]sets.Set[types.UID]{}},
		backoff: &backoffStore{m: map[string]backoffRecord{}}, written: &writtenVersions{m: map[string]uint64{}}, base: cfg.PodFailureBackoff, limit: cfg.MaxPodFailureBackoff,
	}
	if err := podutil.AddControllerIndex(c.podInf); err != nil {
		return nil, err
	}
	h := controllers.Enqueue(c.queue)
	h.DeleteFunc = func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.exp.Delete(key)
			c.fin.forget(key)
			c.backoff.forget(key)
			c.written.forget(key)
			c.queue.Add(key)
		}
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		// The pods the gone job controlled may still carry the tracking
		// finalizer: the index has them under the job's UID.
		if j, ok := obj.(*batchv1.Job); ok && j.UID != "" {
			pods, _ := podutil.ControlledPods(c.podInf.GetIndexer(), j.Namespace, j.UID)
			for _, p := range pods {
				c.enqueueOrphan(p)
			}
		}
	}
	if _, err := c.jobInf.AddEventHandler(h); err != nil {
		return nil, err
	}
	if _, err := c.podInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.addPod, UpdateFunc: c.updatePod, DeleteFunc: c.deletePod,
	}); err != nil {
		return nil, err
	}
	return c, nil
}

// Name implements controllers.Controller.
func (c *Controller) Name() string { return Name }

// Run implements controllers.Controller.
func (c *Controller) Run(ctx context.Context, workers int) error {
	if !controllers.WaitForSync(ctx, c.jobInf.HasSynced, c.podInf.HasSynced) {
		return ctx.Err()
	}
	controllers.RunWorkers(ctx, c.queue, workers, c.log, c.Reconcile)
	return nil
}

// ownerKey is the key of the Job controlling p, or "".
func (c *Controller) ownerKey(p *corev1.Pod) string {
	ref := metav1.GetControllerOf(p)
	if ref == nil || ref.Kind != gvk.Kind || ref.APIVersion != gvk.GroupVersion().String() {
		return ""
	}
	j, err := c.jobs.Jobs(p.Namespace).Get(ref.Name)
	if err != nil || j.UID != ref.UID {
		return ""
	}
	return p.Namespace + "/" + j.Name
}

func (c *Controller) enqueueMatching(p *corev1.Pod) {
	all, err := c.jobs.Jobs(p.Namespace).List(labels.Everything())
	if err != nil {
		return
	}
	for _, j := range all {
		if sel := selectorOf(j); sel.Matches(labels.Set(p.Labels)) {
			c.queue.Add(p.Namespace + "/" + j.Name)
		}
	}
}

// orphanPrefix marks queue keys of pods that still carry the tracking
// finalizer although their Job is gone.
const orphanPrefix = "orphanpod:"

// enqueueOrphan queues p when its controlling Job no longer exists but the
// tracking finalizer would keep it forever.
func (c *Controller) enqueueOrphan(p *corev1.Pod) {
	ref := metav1.GetControllerOf(p)
	if !hasFinalizer(p) || ref == nil || ref.Kind != gvk.Kind || ref.APIVersion != gvk.GroupVersion().String() {
		return
	}
	c.queue.Add(orphanPrefix + p.Namespace + "/" + p.Name)
}

// syncOrphan drops the tracking finalizer of a pod whose Job is gone
// (checked against the API server, not only the cache).
func (c *Controller) syncOrphan(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	p, err := c.pods.Pods(ns).Get(name)
	if err != nil || !hasFinalizer(p) {
		return nil
	}
	ref := metav1.GetControllerOf(p)
	if ref == nil {
		return nil
	}
	j, err := c.client.BatchV1().Jobs(ns).Get(ctx, ref.Name, metav1.GetOptions{})
	switch {
	case err == nil && j.UID == ref.UID:
		c.queue.Add(ns + "/" + j.Name)
		return nil
	case err != nil && !apierrors.IsNotFound(err):
		return err
	}
	return c.patchOutFinalizer(ctx, p)
}

func (c *Controller) addPod(obj any) {
	p := obj.(*corev1.Pod)
	if key := c.ownerKey(p); key != "" {
		c.exp.CreationObserved(key)
		c.queue.Add(key)
		return
	}
	c.enqueueOrphan(p)
	if metav1.GetControllerOf(p) == nil && p.DeletionTimestamp == nil {
		c.enqueueMatching(p)
	}
}

func (c *Controller) updatePod(oldObj, newObj any) {
	old, cur := oldObj.(*corev1.Pod), newObj.(*corev1.Pod)
	if old.ResourceVersion == cur.ResourceVersion {
		return
	}
	if key := c.ownerKey(cur); key != "" {
		if !hasFinalizer(cur) {
			c.fin.observed(key, cur.UID)
		}
		if cur.DeletionTimestamp != nil && old.DeletionTimestamp == nil {
			c.exp.DeletionObserved(key, cur.Namespace+"/"+cur.Name)
		}
		c.queue.Add(key)
		return
	}
	if oldKey := c.ownerKey(old); oldKey != "" {
		c.queue.Add(oldKey)
	}
	c.enqueueOrphan(cur)
	if metav1.GetControllerOf(cur) == nil && cur.DeletionTimestamp == nil {
		c.enqueueMatching(cur)
	}
}

func (c *Controller) deletePod(obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		tomb, ok := obj.(cache.DeletedFinalStateUnknown)
		if !ok {
			return
		}
		if p, ok = tomb.Obj.(*corev1.Pod); !ok {
			return
		}
	}
	if key := c.ownerKey(p); key != "" {
		c.fin.observed(key, p.UID)
		c.exp.DeletionObserved(key, p.Namespace+"/"+p.Name)
		c.queue.Add(key)
	}
}

func selectorOf(j *batchv1.Job) labels.Selector {
	if j.Spec.Selector == nil {
		return labels.Nothing()
	}
	s, err := metav1.LabelSelectorAsSelector(j.Spec.Selector)
	if err != nil || s.Empty() {
		return labels.Nothing()
	}
	return s
}

// state is what one sync learns about a job's pods.
type state struct {
	owned       []*corev1.Pod
	active      []*corev1.Pod
	terminating int
	ready       int
	// toFinalize are finished pods whose tracking finalizer must go.
	toFinalize []*corev1.Pod
	// newFailed are failed pods not yet recorded in uncountedTerminatedPods.
	newFailed int
}

// Reconcile brings Job key one step closer to done and writes its status.
func (c *Controller) Reconcile(ctx context.Context, key string) (controllers.Result, error) {
	if podKey, ok := strings.CutPrefix(key, orphanPrefix); ok {
		return controllers.Result{}, c.syncOrphan(ctx, podKey)
	}
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return controllers.Result{}, nil
	}
	cached, err := c.jobs.Jobs(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.exp.Delete(key)
		c.fin.forget(key)
		c.backoff.forget(key)
		c.written.forget(key)
		return controllers.Result{}, nil
	}
	if err != nil {
		return controllers.Result{}, err
	}
	if m := cached.Spec.ManagedBy; m != nil && *m != controllerManagedBy {
		return controllers.Result{}, nil
	}
	if c.written.ahead(key, cached.ResourceVersion) {
		// The cache has not shown this controller's last status write:
		// its counts may miss a pod whose finalizer that write's sync
		// removed (the pod cache can be newer than the job's), and the
		// sync would replace a pod that succeeded (upstream
		// kubernetes#130103). The write's watch event queues the job.
		return controllers.Result{RequeueAfter: time.Second}, nil
	}
	needsSync := c.exp.Satisfied(key)
	j := cached.DeepCopy()
	now := c.clock.Now()
	// Its own pods and the orphans it may adopt, from the controller
	// index: never a walk over every pod of the namespace.
	candidates, err := podutil.OwnAndOrphans(c.podInf.GetIndexer(), ns, j.UID)
	if err != nil {
		return controllers.Result{}, err
	}
	owned, claimErr := c.claimPods(ctx, j, candidates)

	st := &state{owned: owned}
	un := j.Status.UncountedTerminatedPods
	if un == nil {
		un = &batchv1.UncountedTerminatedPods{}
	}
	uncSucc := sets.New(un.Succeeded...)
	uncFail := sets.New(un.Failed...)
	indexed := isIndexed(j)
	completions := 0
	if j.Spec.Completions != nil {
		completions = int(*j.Spec.Completions)
	}
	done := Indexes{}
	if indexed {
		done = ParseIndexes(j.Status.CompletedIndexes, completions)
	}
	var failMsg, failReason string
	finishing := IsFinished(j) || HasCondition(j, batchv1.JobFailureTarget) || HasCondition(j, batchv1.JobSuccessCriteriaMet)
	newSucceeded, newFailedCounted := 0, 0
	for _, p := range owned {
		if hasFinalizer(p) && c.fin.pending(key, p.UID) {
			continue // its finalizer removal is in flight: already counted
		}
		switch {
		case podutil.IsActive(p):
			st.active = append(st.active, p)
			if podutil.IsReady(p) {
				st.ready++
			}
		case isTerminating(p):
			st.terminating++
		}
		if !hasFinalizer(p) {
			continue
		}
		uid := p.UID
		if uncSucc.Has(uid) || uncFail.Has(uid) {
			st.toFinalize = append(st.toFinalize, p)
			continue
		}
		switch {
		case p.Status.Phase == corev1.PodSucceeded:
			st.toFinalize = append(st.toFinalize, p)
			if indexed {
				ix := PodIndex(p)
				if ix < 0 || ix >= completions || done[ix] {
					continue // not counted: a duplicate or stray index
				}
				done[ix] = true
			}
			uncSucc.Insert(uid)
			newSucceeded++
		case IsPodFailed(p, j):
			st.toFinalize = append(st.toFinalize, p)
			act := MatchPodFailurePolicy(j.Spec.PodFailurePolicy, p)
			switch act.Action {
			case batchv1.PodFailurePolicyActionIgnore:
				continue // replaced, never counted
			case batchv1.PodFailurePolicyActionFailJob:
				if failReason == "" {
					failReason, failMsg = batchv1.JobReasonPodFailurePolicy, act.Message
				}
			}
			uncFail.Insert(uid)
			newFailedCounted++
		case finishing && p.DeletionTimestamp != nil:
			st.toFinalize = append(st.toFinalize, p)
		}
	}
	if newSucceeded > 0 {
		c.backoff.success(key)
	}
	if newFailedCounted > 0 {
		c.backoff.failed(key, newFailedCounted, now)
	}
	succeeded := int(j.Status.Succeeded) + uncSucc.Len()
	if indexed {
		succeeded = len(done)
	}
	failed := int(j.Status.Failed) + uncFail.Len()

	// Suspension, start time and deadline.
	var result controllers.Result
	changedSuspend := false
	if !IsFinished(j) {
		if isSuspended(j) {
			changedSuspend = setCondition(j, batchv1.JobSuspended, corev1.ConditionTrue, reasonSuspended, msgSuspended, now)
			if changedSuspend {
				c.event(j, corev1.EventTypeNormal, Suspended, msgSuspended)
			}
		} else {
			if HasCondition(j, batchv1.JobSuspended) {
				setCondition(j, batchv1.JobSuspended, corev1.ConditionFalse, reasonResumed, msgResumed, now)
				c.event(j, corev1.EventTypeNormal, Resumed, msgResumed)
				t := metav1.NewTime(now)
				j.Status.StartTime = &t
			}
			if j.Status.StartTime == nil {
				t := metav1.NewTime(now)
				j.Status.StartTime = &t
			}
		}
	}

	// Decide whether the job has failed or succeeded.
	if !finishing {
		switch {
		case failReason != "":
		case PastBackoffLimit(j, failed, st.active):
			failReason, failMsg = batchv1.JobReasonBackoffLimitExceeded, msgBackoffLimit
		case j.Spec.ActiveDeadlineSeconds != nil && j.Status.StartTime != nil && !isSuspended(j):
			deadline := j.Status.StartTime.Add(time.Duration(*j.Spec.ActiveDeadlineSeconds) * time.Second)
			if !now.Before(deadline) {
				failReason, failMsg = batchv1.JobReasonDeadlineExceeded, msgDeadline
			} else {
				result.RequeueAfter = deadline.Sub(now)
			}
		}
		if failReason != "" {
			setCondition(j, batchv1.JobFailureTarget, corev1.ConditionTrue, failReason, failMsg, now)
			finishing = true
		} else if complete(j, succeeded, len(st.active), done, completions) {
			setCondition(j, batchv1.JobSuccessCriteriaMet, corev1.ConditionTrue, batchv1.JobReasonCompletionsReached, msgCompletions, now)
			finishing = true
		}
	}

	// Manage pods.
	var manageErr error
	switch {
	case finishing || j.DeletionTimestamp != nil:
		if len(st.active) > 0 {
			manageErr = c.deletePods(ctx, key, j, st.active)
			st.terminating += len(st.active)
			st.active, st.ready = nil, 0
		}
	case needsSync:
		var wait time.Duration
		wait, manageErr = c.manage(ctx, key, j, st, succeeded, done, uncFail)
		if wait > 0 && (result.RequeueAfter == 0 || wait < result.RequeueAfter) {
			result.RequeueAfter = wait
		}
	}

	// Status: record newly finished pods, drop their finalizers, count them.
	j.Status.Active = int32(len(st.active))
	j.Status.Ready = ptr(int32(st.ready))
	j.Status.Terminating = ptr(int32(st.terminating))
	if indexed {
		j.Status.CompletedIndexes = done.String()
		j.Status.Succeeded = int32(len(done))
	}
	j.Status.UncountedTerminatedPods = &batchv1.UncountedTerminatedPods{Succeeded: sortedUIDs(uncSucc), Failed: sortedUIDs(uncFail)}
	if len(st.toFinalize) > 0 {
		if j, err = c.writeStatus(ctx, cached, j); err != nil {
			return controllers.Result{}, err
		}
		removed, rmErr := c.removeFinalizers(ctx, key, st.toFinalize)
		for uid := range removed {
			if uncSucc.Has(uid) {
				uncSucc.Delete(uid)
				if !indexed {
					j.Status.Succeeded++
				}
			}
			if uncFail.Has(uid) {
				uncFail.Delete(uid)
				j.Status.Failed++
			}
		}
		manageErr = errors.Join(manageErr, rmErr)
	}
	// UIDs whose pods are gone or lost their finalizer elsewhere count too.
	present := sets.New[types.UID]()
	for _, p := range owned {
		if hasFinalizer(p) && !c.fin.pending(key, p.UID) {
			present.Insert(p.UID)
		}
	}
	for _, uid := range sortedUIDs(uncSucc) {
		if !present.Has(uid) {
			uncSucc.Delete(uid)
			if !indexed {
				j.Status.Succeeded++
			}
		}
	}
	for _, uid := range sortedUIDs(uncFail) {
		if !present.Has(uid) {
			uncFail.Delete(uid)
			j.Status.Failed++
		}
	}
	j.Status.UncountedTerminatedPods = &batchv1.UncountedTerminatedPods{Succeeded: sortedUIDs(uncSucc), Failed: sortedUIDs(uncFail)}

	// Terminal conditions once no pod is left running or terminating.
	if !IsFinished(j) && st.terminating == 0 && len(st.active) == 0 && uncSucc.Len() == 0 && uncFail.Len() == 0 {
		if c := FindCondition(j, batchv1.JobFailureTarget); c != nil && c.Status == corev1.ConditionTrue {
			setCondition(j, batchv1.JobFailed, corev1.ConditionTrue, c.Reason, c.Message, now)
		} else if HasCondition(j, batchv1.JobSuccessCriteriaMet) {
			setCondition(j, batchv1.JobComplete, corev1.ConditionTrue, batchv1.JobReasonCompletionsReached, msgCompletions, now)
			t := metav1.NewTime(now)
			j.Status.CompletionTime = &t
		}
	}
	if _, err := c.writeStatus(ctx, cached, j); err != nil {
		return controllers.Result{}, err
	}
	if HasCondition(j, batchv1.JobFailed) && !HasCondition(cached, batchv1.JobFailed) {
		cond := FindCondition(j, batchv1.JobFailed)
		c.event(j, corev1.EventTypeWarning, cond.Reason, cond.Message)
	}
	if HasCondition(j, batchv1.JobComplete) && !HasCondition(cached, batchv1.JobComplete) {
		c.event(j, corev1.EventTypeNormal, Completed, "Job completed")
	}
	if err := errors.Join(claimErr, manageErr); err != nil {
		return controllers.Result{}, err
	}
	if IsFinished(j) {
		result.RequeueAfter = 0
	}
	return result, nil
}

func complete(j *batchv1.Job, succeeded, active int, done Indexes, completions int) bool {
	if isIndexed(j) {
		return completions > 0 && len(done) >= completions
	}
	if j.Spec.Completions == nil {
		return succeeded > 0 && active == 0
	}
	return succeeded >= int(*j.Spec.Completions)
}

// manage creates and deletes pods toward the wanted active count; it
// returns how long to wait when pod creation is held back by backoff.
func (c *Controller) manage(ctx context.Context, key string, j *batchv1.Job, st *state, succeeded int, done Indexes, uncFail sets.Set[types.UID]) (time.Duration, error) {
	if isSuspended(j) {
		if len(st.active) == 0 {
			return 0, nil
		}
		err := c.deletePods(ctx, key, j, st.active)
		st.terminating += len(st.active)
		st.active, st.ready = nil, 0
		return 0, err
	}
	par := parallelism(j)
	if isIndexed(j) {
		return c.manageIndexed(ctx, key, j, st, done, par)
	}
	want := WantActive(j, succeeded, len(st.active))
	have := len(st.active)
	if onlyReplaceFailed(j) {
		have += st.terminating
	}
	switch {
	case have > want && len(st.active) > 0:
		victims := append([]*corev1.Pod(nil), st.active...)
		deletionOrder(victims)
		victims = victims[:min(have-want, len(victims))]
		err := c.deletePods(ctx, key, j, victims)
		st.active = subtract(st.active, victims)
		st.terminating += len(victims)
		return 0, err
	case have < want:
		if wait := c.backoff.remaining(key, c.base, c.limit, c.clock.Now()); wait > 0 {
			return wait, nil
		}
		return 0, c.createPods(ctx, key, j, want-have, nil)
	}
	return 0, nil
}

func (c *Controller) manageIndexed(ctx context.Context, key string, j *batchv1.Job, st *state, done Indexes, par int) (time.Duration, error) {
	completions := int(*j.Spec.Completions)
	busy := map[int]bool{}
	var extra []*corev1.Pod
	// Keep one active pod per live index (the ready or older one); the rest
	// (duplicates, stray or completed indexes) go.
	byIndex := map[int]*corev1.Pod{}
	for _, p := range st.active {
		ix := PodIndex(p)
		if ix < 0 || ix >= completions || done[ix] {
			extra = append(extra, p)
			continue
		}
		if cur, ok := byIndex[ix]; ok {
			keep, drop := cur, p
			if (!podutil.IsReady(cur) && podutil.IsReady(p)) || (podutil.IsReady(cur) == podutil.IsReady(p) && p.CreationTimestamp.Before(&cur.CreationTimestamp)) {
				keep, drop = p, cur
			}
			byIndex[ix] = keep
			extra = append(extra, drop)
			continue
		}
		byIndex[ix] = p
	}
	for ix := range byIndex {
		busy[ix] = true
	}
	if onlyReplaceFailed(j) {
		for _, p := range st.owned {
			if isTerminating(p) {
				if ix := PodIndex(p); ix >= 0 {
					busy[ix] = true
				}
			}
		}
	}
	// Over parallelism: drop the highest indexes.
	if len(byIndex) > par {
		var keys []int
		for ix := range byIndex {
			keys = append(keys, ix)
		}
		sortDesc(keys)
		for _, ix := range keys[:len(byIndex)-par] {
			extra = append(extra, byIndex[ix])
			delete(byIndex, ix)
		}
	}
	var err error
	if len(extra) > 0 {
		err = c.deletePods(ctx, key, j, extra)
		st.active = subtract(st.active, extra)
		st.terminating += len(extra)
	}
	room := par - len(byIndex)
	if room <= 0 {
		return 0, err
	}
	ixs := IndexesToCreate(completions, done, nil, busy, room)
	if len(ixs) == 0 {
		return 0, err
	}
	if wait := c.backoff.remaining(key, c.base, c.limit, c.clock.Now()); wait > 0 {
		return wait, err
	}
	return 0, errors.Join(err, c.createPods(ctx, key, j, len(ixs), ixs))
}

func sortDesc(a []int) {
	for i := 1; i < len(a); i++ {
		for k := i; k > 0 && a[k] > a[k-1]; k-- {
			a[k], a[k-1] = a[k-1], a[k]
		}
	}
}

func subtract(all, drop []*corev1.Pod) []*corev1.Pod {
	gone := map[types.UID]bool{}
	for _, p := range drop {
		gone[p.UID] = true
	}
	var out []*corev1.Pod
	for _, p := range all {
		if !gone[p.UID] {
			out = append(out, p)
		}
	}
	return out
}

// createPods creates n pods (for the given indexes when Indexed) in
// slow-start batches, under creation expectations.
func (c *Controller) createPods(ctx context.Context, key string, j *batchv1.Job, n int, indexes []int) error {
	n = min(n, replicaset.BurstReplicas)
	c.exp.ExpectCreations(key, n)
	var mu sync.Mutex
	next := 0
	created, err := replicaset.SlowStartBatch(n, 1, func() error {
		mu.Lock()
		i := next
		next++
		mu.Unlock()
		p := replicaset.PodFromTemplate(&j.Spec.Template, j, podutil.NewControllerRef(j, gvk))
		p.Finalizers = append(p.Finalizers, batchv1.JobTrackingFinalizer)
		if indexes != nil {
			PodForIndex(p, j.Name, indexes[i])
		}
		got, err := c.client.CoreV1().Pods(j.Namespace).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
				return nil
			}
			c.event(j, corev1.EventTypeWarning, FailedCreate, fmt.Sprintf("Error creating: %v", err))
			return err
		}
		c.event(j, corev1.EventTypeNormal, SuccessfulCreate, "Created pod: "+got.Name)
		return nil
	})
	for range n - created {
		c.exp.CreationObserved(key)
	}
	return err
}

// deletePods removes the tracking finalizer (a pod the controller deletes
// is not a failure) and deletes each pod.
func (c *Controller) deletePods(ctx context.Context, key string, j *batchv1.Job, pods []*corev1.Pod) error {
	keys := make([]string, len(pods))
	for i, p := range pods {
		keys[i] = p.Namespace + "/" + p.Name
	}
	c.exp.ExpectDeletions(key, keys)
	errs := make([]error, len(pods))
	var wg sync.WaitGroup
	for i, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if hasFinalizer(p) {
				if err := c.patchOutFinalizer(ctx, p); err != nil {
					c.exp.DeletionObserved(key, keys[i])
					errs[i] = err
					return
				}
				c.fin.expect(key, p.UID)
			}
			err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}})
			switch {
			case err == nil:
				c.event(j, corev1.EventTypeNormal, SuccessfulDelete, "Deleted pod: "+p.Name)
			case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
				c.exp.DeletionObserved(key, keys[i])
			default:
				c.exp.DeletionObserved(key, keys[i])
				c.event(j, corev1.EventTypeWarning, FailedDelete, fmt.Sprintf("Error deleting: %v", err))
				errs[i] = err
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

var finalizerPatch = func() []byte {
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{
		"$deleteFromPrimitiveList/finalizers": []string{batchv1.JobTrackingFinalizer}}})
	return b
}()

func (c *Controller) patchOutFinalizer(ctx context.Context, p *corev1.Pod) error {
	_, err := c.client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.StrategicMergePatchType, finalizerPatch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// removeFinalizers drops the tracking finalizer from pods; it returns the
// UIDs whose finalizer is gone.
func (c *Controller) removeFinalizers(ctx context.Context, key string, pods []*corev1.Pod) (sets.Set[types.UID], error) {
	removed := sets.New[types.UID]()
	var mu sync.Mutex
	errs := make([]error, len(pods))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, p := range pods {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			c.fin.expect(key, p.UID)
			if err := c.patchOutFinalizer(ctx, p); err != nil {
				c.fin.observed(key, p.UID)
				errs[i] = fmt.Errorf("remove finalizer of pod %s: %w", p.Name, err)
				return
			}
			mu.Lock()
			removed.Insert(p.UID)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return removed, errors.Join(errs...)
}

// claimPods returns the pods j controls, adopting orphans that match its
// selector while j is live and unfinished.
func (c *Controller) claimPods(ctx context.Context, j *batchv1.Job, pods []*corev1.Pod) ([]*corev1.Pod, error) {
	cl := podutil.Claimer{
		Client: c.client, Owner: j, GVK: gvk, Selector: selectorOf(j), KeepUnmatched: true,
		Fresh: func(ctx context.Context) (metav1.Object, error) {
			return c.client.BatchV1().Jobs(j.Namespace).Get(ctx, j.Name, metav1.GetOptions{})
		},
		Adoptable: func(*corev1.Pod) bool { return !IsFinished(j) },
	}
	return cl.Claim(ctx, pods)
}

// writeStatus updates status when it differs from the cached job; a stale
// cache answers 409 and the key is retried.
func (c *Controller) writeStatus(ctx context.Context, cached, j *batchv1.Job) (*batchv1.Job, error) {
	if statusEqual(cached.Status, j.Status) && cached.ResourceVersion == j.ResourceVersion {
		return j, nil
	}
	got, err := c.client.BatchV1().Jobs(j.Namespace).UpdateStatus(ctx, j, metav1.UpdateOptions{})
	if err != nil {
		return j, fmt.Errorf("update job status: %w", err)
	}
	c.written.set(j.Namespace+"/"+j.Name, got.ResourceVersion)
	return got, nil
}

func statusEqual(a, b batchv1.JobStatus) bool {
	a2, b2 := a.DeepCopy(), b.DeepCopy()
	norm := func(s *batchv1.JobStatus) {
		if s.UncountedTerminatedPods != nil && len(s.UncountedTerminatedPods.Succeeded) == 0 && len(s.UncountedTerminatedPods.Failed) == 0 {
			s.UncountedTerminatedPods = nil
		}
		if s.Ready != nil && *s.Ready == 0 {
			s.Ready = nil
		}
		if s.Terminating != nil && *s.Terminating == 0 {
			s.Terminating = nil
		}
		for i := range s.Conditions {
			s.Conditions[i].LastProbeTime = metav1.Time{}
		}
	}
	norm(a2)
	norm(b2)
	ja, _ := json.Marshal(a2)
	jb, _ := json.Marshal(b2)
	return string(ja) == string(jb)
}

func (c *Controller) event(j *batchv1.Job, typ, reason, msg string) {
	if c.rec == nil {
		return
	}
	ref := &corev1.ObjectReference{Kind: gvk.Kind, APIVersion: gvk.GroupVersion().String(),
		Namespace: j.Namespace, Name: j.Name, UID: j.UID, ResourceVersion: j.ResourceVersion}
	c.rec.Event(ref, typ, reason, msg)
}

func sortedUIDs(s sets.Set[types.UID]) []types.UID {
	if s.Len() == 0 {
		return nil
	}
	out := sets.List(s)
	return out
}

func ptr[T any](v T) *T { return &v }

// finalizerExpectations are the pods whose tracking finalizer this
// controller removed but whose update the cache has not shown yet; such
// pods are skipped so a stale cache never counts a pod twice.
type finalizerExpectations struct {
	mu sync.Mutex
	m  map[string]sets.Set[types.UID]
}

func (f *finalizerExpectations) expect(key string, uid types.UID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m[key] == nil {
		f.m[key] = sets.New[types.UID]()
	}
	f.m[key].Insert(uid)
}

func (f *finalizerExpectations) observed(key string, uid types.UID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.m[key]; s != nil {
		s.Delete(uid)
	}
}

func (f *finalizerExpectations) pending(key string, uid types.UID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m[key].Has(uid)
}

func (f *finalizerExpectations) forget(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, key)
}

// writtenVersions is, per job, the resourceVersion of this controller's
// last status write. Versions are compared as numbers: this API server's
// are etcd revisions; one that is not a number is never held back.
type writtenVersions struct {
	mu sync.Mutex
	m  map[string]uint64
}

func (w *writtenVersions) set(key, rv string) {
	n, err := strconv.ParseUint(rv, 10, 64)
	if err != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.m[key] = max(w.m[key], n)
}

// ahead reports whether the last write to key is newer than rv.
func (w *writtenVersions) ahead(key, rv string) bool {
	n, err := strconv.ParseUint(rv, 10, 64)
	if err != nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.m[key] > n
}

func (w *writtenVersions) forget(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.m, key)
}

// backoffRecord counts consecutive failures since the last success.
type backoffRecord struct {
	failures int
	last     time.Time
}

type backoffStore struct {
	mu sync.Mutex
	m  map[string]backoffRecord
}

func (b *backoffStore) failed(key string, n int, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.m[key]
	r.failures += n
	r.last = at
	b.m[key] = r
}

func (b *backoffStore) success(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.m, key)
}

func (b *backoffStore) forget(key string) { b.success(key) }

func (b *backoffStore) remaining(key string, base, limit time.Duration, now time.Time) time.Duration {
	b.mu.Lock()
	r, ok := b.m[key]
	b.mu.Unlock()
	if !ok {
		return 0
	}
	return max(0, r.last.Add(Backoff(r.failures, base, limit)).Sub(now))
}
