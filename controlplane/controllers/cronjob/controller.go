// Package cronjob is the CronJob controller: it creates a Job from a
// CronJob's template at each time of its cron schedule (in its time zone),
// honouring startingDeadlineSeconds, concurrencyPolicy and suspend, keeps
// status.active, lastScheduleTime and lastSuccessfulTime, and deletes
// finished Jobs beyond the history limits. See README.md.
package cronjob

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/internal/podutil"
	"github.com/skiffhq/skiff/controlplane/controllers/job"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
)

// Name is the controller's upstream name.
const Name = "cronjob-controller"

// Event reasons, as upstream.
const (
	SuccessfulCreate    = "SuccessfulCreate"
	FailedCreate        = "FailedCreate"
	SuccessfulDelete    = "SuccessfulDelete"
	FailedDelete        = "FailedDelete"
	SawCompletedJob     = "SawCompletedJob"
	MissingJob          = "MissingJob"
	UnexpectedJob       = "UnexpectedJob"
	MissSchedule        = "MissSchedule"
	JobAlreadyActive    = "JobAlreadyActive"
	TooManyMissedTimes  = "TooManyMissedTimes"
	UnparseableSchedule = "UnparseableSchedule"
	UnknownTimeZone     = "UnknownTimeZone"
)

// nextScheduleDelta is added to requeues so the sync lands after the
// schedule time, not just before it (upstream's 100ms).
const nextScheduleDelta = 100 * time.Millisecond

var gvk = batchv1.SchemeGroupVersion.WithKind("CronJob")

// Config is what the controller needs.
type Config struct {
	Client    kubernetes.Interface
	Informers informers.SharedInformerFactory
	Recorder  record.EventRecorder
	Logger    *slog.Logger
	// Clock is the time schedules are evaluated at (default: real time);
	// tests inject a fake one so no test waits for a real minute.
	Clock clock.WithTicker
}

// Controller runs CronJobs.
type Controller struct {
	client kubernetes.Interface
	cjs    batchlisters.CronJobLister
	cjInf  cache.SharedIndexInformer
	jobs   batchlisters.JobLister
	jobInf cache.SharedIndexInformer
	rec    record.EventRecorder
	log    *slog.Logger
	queue  workqueue.TypedRateLimitingInterface[string]
	clock  clock.WithTicker
}

var _ controllers.Controller = (*Controller)(nil)

// New returns the CronJob controller with its informer handlers registered.
func New(cfg Config) (*Controller, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	cjs := cfg.Informers.Batch().V1().CronJobs()
	jobs := cfg.Informers.Batch().V1().Jobs()
	c := &Controller{
		client: cfg.Client, cjs: cjs.Lister(), cjInf: cjs.Informer(), jobs: jobs.Lister(), jobInf: jobs.Informer(),
		rec: cfg.Recorder, log: cfg.Logger.With("component", Name), clock: cfg.Clock,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "cronjob", Clock: cfg.Clock}),
	}
	if _, err := c.cjInf.AddEventHandler(controllers.Enqueue(c.queue)); err != nil {
		return nil, err
	}
	enqueueOwner := func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		j, ok := obj.(*batchv1.Job)
		if !ok {
			return
		}
		ref := metav1.GetControllerOf(j)
		if ref == nil || ref.Kind != gvk.Kind || ref.APIVersion != gvk.GroupVersion().String() {
			return
		}
		c.queue.Add(j.Namespace + "/" + ref.Name)
	}
	if _, err := c.jobInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueueOwner, UpdateFunc: func(_, obj any) { enqueueOwner(obj) }, DeleteFunc: enqueueOwner,
	}); err != nil {
		return nil, err
	}
	return c, nil
}

// Name implements controllers.Controller.
func (c *Controller) Name() string { return Name }

// Run implements controllers.Controller.
func (c *Controller) Run(ctx context.Context, workers int) error {
	if !controllers.WaitForSync(ctx, c.cjInf.HasSynced, c.jobInf.HasSynced) {
		return ctx.Err()
	}
	controllers.RunWorkers(ctx, c.queue, workers, c.log, c.Reconcile)
	return nil
}

// Reconcile starts the CronJob's due Job, if any, updates its status and
// requeues it for its next schedule time.
func (c *Controller) Reconcile(ctx context.Context, key string) (controllers.Result, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return controllers.Result{}, nil
	}
	cached, err := c.cjs.CronJobs(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return controllers.Result{}, nil
	}
	if err != nil {
		return controllers.Result{}, err
	}
	all, err := c.jobs.Jobs(ns).List(labels.Everything())
	if err != nil {
		return controllers.Result{}, err
	}
	var owned []*batchv1.Job
	for _, j := range all {
		if ref := metav1.GetControllerOf(j); ref != nil && ref.UID == cached.UID {
			owned = append(owned, j)
		}
	}
	cj := cached.DeepCopy()
	now := c.clock.Now()
	if err := c.syncActive(ctx, cj, owned); err != nil {
		return controllers.Result{}, err
	}
	res, syncErr := c.schedule(ctx, cj, now)
	if err := c.writeStatus(ctx, cached, cj); err != nil {
		return controllers.Result{}, err
	}
	cleanErr := c.cleanupHistory(ctx, cj, owned)
	if err := errors.Join(syncErr, cleanErr); err != nil {
		return controllers.Result{}, err
	}
	return res, nil
}

// syncActive brings status.active in line with the jobs that exist: it
// drops finished and missing jobs, notes the last success, and lists
// unfinished jobs this controller created that a crash left out.
func (c *Controller) syncActive(ctx context.Context, cj *batchv1.CronJob, owned []*batchv1.Job) error {
	seen := map[types.UID]bool{}
	for _, j := range owned {
		seen[j.UID] = true
		inActive := activeIndex(cj, j.UID) >= 0
		finished := job.IsFinished(j)
		switch {
		case !inActive && !finished:
			if _, ours := j.Annotations[batchv1.CronJobScheduledTimestampAnnotation]; ours && j.DeletionTimestamp == nil {
				cj.Status.Active = append(cj.Status.Active, jobRef(j))
				continue
			}
			c.event(cj, corev1.EventTypeWarning, UnexpectedJob, "Saw a job that the controller did not create or forgot: "+j.Name)
		case inActive && finished:
			removeActive(cj, j.UID)
			cond := batchv1.JobFailed
			if job.HasCondition(j, batchv1.JobComplete) {
				cond = batchv1.JobComplete
			}
			c.event(cj, corev1.EventTypeNormal, SawCompletedJob, fmt.Sprintf("Saw completed job: %s, condition: %s", j.Name, cond))
		}
		if job.HasCondition(j, batchv1.JobComplete) && j.Status.CompletionTime != nil {
			if last := cj.Status.LastSuccessfulTime; last == nil || last.Before(j.Status.CompletionTime) {
				t := *j.Status.CompletionTime
				cj.Status.LastSuccessfulTime = &t
			}
		}
	}
	for _, ref := range append([]corev1.ObjectReference(nil), cj.Status.Active...) {
		if seen[ref.UID] {
			continue
		}
		// The cache may lag the job's create: ask the API server.
		j, err := c.client.BatchV1().Jobs(cj.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err) || (err == nil && j.UID != ref.UID):
			removeActive(cj, ref.UID)
			c.event(cj, corev1.EventTypeNormal, MissingJob, "Active job went missing: "+ref.Name)
		case err != nil:
			return fmt.Errorf("get job %s: %w", ref.Name, err)
		}
	}
	sort.Slice(cj.Status.Active, func(a, b int) bool { return cj.Status.Active[a].Name < cj.Status.Active[b].Name })
	return nil
}

// schedule starts the due job, if any, and says when to look again.
func (c *Controller) schedule(ctx context.Context, cj *batchv1.CronJob, now time.Time) (controllers.Result, error) {
	if cj.DeletionTimestamp != nil {
		return controllers.Result{}, nil
	}
	sched, err := ParseSchedule(cj)
	if err != nil {
		reason := UnparseableSchedule
		if cj.Spec.TimeZone != nil {
			if _, tzErr := time.LoadLocation(*cj.Spec.TimeZone); tzErr != nil {
				reason = UnknownTimeZone
			}
		}
		c.event(cj, corev1.EventTypeWarning, reason, fmt.Sprintf("unparseable schedule %q: %v", cj.Spec.Schedule, err))
		return controllers.Result{}, nil
	}
	if cj.Spec.Suspend != nil && *cj.Spec.Suspend {
		return controllers.Result{}, nil
	}
	next := controllers.Result{RequeueAfter: NextScheduleDelay(sched, now) + nextScheduleDelta}
	scheduled, missed := MostRecentScheduleTime(cj, now, sched)
	if scheduled == nil {
		return next, nil
	}
	if missed > tooManyMissed {
		c.event(cj, corev1.EventTypeWarning, TooManyMissedTimes, fmt.Sprintf(
			"too many missed start times: %d. Set or decrease .spec.startingDeadlineSeconds or check clock skew", missed))
	}
	if d := cj.Spec.StartingDeadlineSeconds; d != nil && scheduled.Add(time.Duration(*d)*time.Second).Before(now) {
		c.event(cj, corev1.EventTypeWarning, MissSchedule, "Missed scheduled time to start a job: "+scheduled.UTC().Format(time.RFC1123Z))
		return next, nil
	}
	name := JobName(cj, *scheduled)
	for _, ref := range cj.Status.Active {
		if ref.Name == name {
			return next, nil
		}
	}
	switch cj.Spec.ConcurrencyPolicy {
	case batchv1.ForbidConcurrent:
		if len(cj.Status.Active) > 0 {
			c.event(cj, corev1.EventTypeNormal, JobAlreadyActive, "Not starting job because prior execution is running and concurrency policy is Forbid")
			return next, nil
		}
	case batchv1.ReplaceConcurrent:
		for _, ref := range append([]corev1.ObjectReference(nil), cj.Status.Active...) {
			bg := metav1.DeletePropagationBackground
			err := c.client.BatchV1().Jobs(cj.Namespace).Delete(ctx, ref.Name, metav1.DeleteOptions{
				PropagationPolicy: &bg, Preconditions: &metav1.Preconditions{UID: &ref.UID}})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				c.event(cj, corev1.EventTypeWarning, FailedDelete, fmt.Sprintf("Deleted job: %v", err))
				return controllers.Result{}, fmt.Errorf("replace job %s: %w", ref.Name, err)
			}
			removeActive(cj, ref.UID)
			c.event(cj, corev1.EventTypeNormal, SuccessfulDelete, "Deleted job "+ref.Name)
		}
	}
	want := JobFromTemplate(cj, *scheduled)
	created, err := c.client.BatchV1().Jobs(cj.Namespace).Create(ctx, want, metav1.CreateOptions{})
	switch {
	case apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
		return controllers.Result{}, nil
	case apierrors.IsAlreadyExists(err):
		// Created before a crash or a stale cache: adopt it into status if ours.
		existing, getErr := c.client.BatchV1().Jobs(cj.Namespace).Get(ctx, want.Name, metav1.GetOptions{})
		if getErr != nil {
			return controllers.Result{}, getErr
		}
		ref := metav1.GetControllerOf(existing)
		if ref == nil || ref.UID != cj.UID {
			return next, nil
		}
		created = existing
	case err != nil:
		c.event(cj, corev1.EventTypeWarning, FailedCreate, fmt.Sprintf("Error creating job: %v", err))
		return controllers.Result{}, fmt.Errorf("create job %s: %w", want.Name, err)
	default:
		c.event(cj, corev1.EventTypeNormal, SuccessfulCreate, "Created job "+created.Name)
	}
	if !job.IsFinished(created) && activeIndex(cj, created.UID) < 0 {
		cj.Status.Active = append(cj.Status.Active, jobRef(created))
	}
	t := metav1.NewTime(*scheduled)
	cj.Status.LastScheduleTime = &t
	return next, nil
}

// JobFromTemplate is the Job the CronJob runs at scheduled time t.
func JobFromTemplate(cj *batchv1.CronJob, t time.Time) *batchv1.Job {
	lbl := map[string]string{}
	for k, v := range cj.Spec.JobTemplate.Labels {
		lbl[k] = v
	}
	ann := map[string]string{}
	for k, v := range cj.Spec.JobTemplate.Annotations {
		ann[k] = v
	}
	ts := t
	if tz := cj.Spec.TimeZone; tz != nil {
		if loc, err := time.LoadLocation(*tz); err == nil {
			ts = t.In(loc)
		}
	}
	ann[batchv1.CronJobScheduledTimestampAnnotation] = ts.Format(time.RFC3339)
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name: JobName(cj, t), Namespace: cj.Namespace, Labels: lbl, Annotations: ann,
			OwnerReferences: []metav1.OwnerReference{*podutil.NewControllerRef(cj, gvk)},
		},
		Spec: *cj.Spec.JobTemplate.Spec.DeepCopy(),
	}
}

// cleanupHistory deletes the oldest finished jobs beyond the history limits.
func (c *Controller) cleanupHistory(ctx context.Context, cj *batchv1.CronJob, owned []*batchv1.Job) error {
	if cj.DeletionTimestamp != nil {
		return nil
	}
	var ok, failed []*batchv1.Job
	for _, j := range owned {
		switch {
		case j.DeletionTimestamp != nil:
		case job.HasCondition(j, batchv1.JobComplete):
			ok = append(ok, j)
		case job.HasCondition(j, batchv1.JobFailed):
			failed = append(failed, j)
		}
	}
	var errs []error
	for _, set := range []struct {
		jobs  []*batchv1.Job
		limit *int32
	}{{ok, cj.Spec.SuccessfulJobsHistoryLimit}, {failed, cj.Spec.FailedJobsHistoryLimit}} {
		if set.limit == nil || len(set.jobs) <= int(*set.limit) {
			continue
		}
		sortByStart(set.jobs)
		for _, j := range set.jobs[:len(set.jobs)-int(*set.limit)] {
			bg := metav1.DeletePropagationBackground
			err := c.client.BatchV1().Jobs(j.Namespace).Delete(ctx, j.Name, metav1.DeleteOptions{
				PropagationPolicy: &bg, Preconditions: &metav1.Preconditions{UID: &j.UID}})
			switch {
			case err == nil:
				c.event(cj, corev1.EventTypeNormal, SuccessfulDelete, "Deleted job "+j.Name)
			case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
			default:
				c.event(cj, corev1.EventTypeWarning, FailedDelete, fmt.Sprintf("Deleted job: %v", err))
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// sortByStart orders jobs oldest first: by start time (jobs never started
// first), then creation time, then name.
func sortByStart(jobs []*batchv1.Job) {
	sort.SliceStable(jobs, func(a, b int) bool {
		x, y := jobs[a], jobs[b]
		switch {
		case x.Status.StartTime == nil && y.Status.StartTime != nil:
			return true
		case x.Status.StartTime != nil && y.Status.StartTime == nil:
			return false
		case x.Status.StartTime != nil && !x.Status.StartTime.Equal(y.Status.StartTime):
			return x.Status.StartTime.Before(y.Status.StartTime)
		case !x.CreationTimestamp.Equal(&y.CreationTimestamp):
			return x.CreationTimestamp.Before(&y.CreationTimestamp)
		}
		return x.Name < y.Name
	})
}

func (c *Controller) writeStatus(ctx context.Context, cached, cj *batchv1.CronJob) error {
	if apiequality.Semantic.DeepEqual(cached.Status, cj.Status) {
		return nil
	}
	_, err := c.client.BatchV1().CronJobs(cj.Namespace).UpdateStatus(ctx, cj, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("update cronjob status: %w", err)
	}
	return nil
}

func activeIndex(cj *batchv1.CronJob, uid types.UID) int {
	for i, r := range cj.Status.Active {
		if r.UID == uid {
			return i
		}
	}
	return -1
}

func removeActive(cj *batchv1.CronJob, uid types.UID) {
	if i := activeIndex(cj, uid); i >= 0 {
		cj.Status.Active = append(cj.Status.Active[:i], cj.Status.Active[i+1:]...)
	}
}

func jobRef(j *batchv1.Job) corev1.ObjectReference {
	return corev1.ObjectReference{Kind: "Job", APIVersion: "batch/v1", Namespace: j.Namespace, Name: j.Name,
		UID: j.UID, ResourceVersion: j.ResourceVersion}
}

func (c *Controller) event(cj *batchv1.CronJob, typ, reason, msg string) {
	if c.rec == nil {
		return
	}
	ref := &corev1.ObjectReference{Kind: gvk.Kind, APIVersion: gvk.GroupVersion().String(),
		Namespace: cj.Namespace, Name: cj.Name, UID: cj.UID, ResourceVersion: cj.ResourceVersion}
	c.rec.Event(ref, typ, reason, msg)
}
