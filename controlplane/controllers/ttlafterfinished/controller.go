// Package ttlafterfinished is the TTL-after-finished controller: it deletes
// a finished Job (Complete or Failed) spec.ttlSecondsAfterFinished seconds
// after it finished, with background propagation so the garbage collector
// removes its pods. See README.md.
package ttlafterfinished

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/job"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
)

// Name is the controller's upstream name.
const Name = "ttl-after-finished-controller"

// Config is what the controller needs.
type Config struct {
	Client    kubernetes.Interface
	Informers informers.SharedInformerFactory
	Logger    *slog.Logger
	// Clock decides when a TTL has expired (default: real time).
	Clock clock.WithTicker
}

// Controller deletes expired finished Jobs.
type Controller struct {
	client kubernetes.Interface
	jobs   batchlisters.JobLister
	jobInf cache.SharedIndexInformer
	log    *slog.Logger
	queue  workqueue.TypedRateLimitingInterface[string]
	clock  clock.WithTicker
}

var _ controllers.Controller = (*Controller)(nil)

// New returns the controller with its informer handler registered.
func New(cfg Config) (*Controller, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	jobs := cfg.Informers.Batch().V1().Jobs()
	c := &Controller{
		client: cfg.Client, jobs: jobs.Lister(), jobInf: jobs.Informer(), log: cfg.Logger.With("component", Name), clock: cfg.Clock,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "ttl_jobs_to_delete", Clock: cfg.Clock}),
	}
	add := func(obj any) {
		j, ok := obj.(*batchv1.Job)
		if !ok || !needsCleanup(j) {
			return
		}
		if key, err := cache.MetaNamespaceKeyFunc(j); err == nil {
			c.queue.Add(key)
		}
	}
	if _, err := c.jobInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: add, UpdateFunc: func(_, obj any) { add(obj) },
	}); err != nil {
		return nil, err
	}
	return c, nil
}

// Name implements controllers.Controller.
func (c *Controller) Name() string { return Name }

// Run implements controllers.Controller.
func (c *Controller) Run(ctx context.Context, workers int) error {
	if !controllers.WaitForSync(ctx, c.jobInf.HasSynced) {
		return ctx.Err()
	}
	controllers.RunWorkers(ctx, c.queue, workers, c.log, c.Reconcile)
	return nil
}

func needsCleanup(j *batchv1.Job) bool {
	return j.Spec.TTLSecondsAfterFinished != nil && j.DeletionTimestamp == nil && job.IsFinished(j)
}

// FinishTime is when the job got its Complete or Failed condition.
func FinishTime(j *batchv1.Job) (time.Time, error) {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			if c.LastTransitionTime.IsZero() {
				return time.Time{}, fmt.Errorf("job %s/%s: %s condition has no transition time", j.Namespace, j.Name, c.Type)
			}
			return c.LastTransitionTime.Time, nil
		}
	}
	return time.Time{}, fmt.Errorf("job %s/%s is not finished", j.Namespace, j.Name)
}

// TimeLeft is how long until j's TTL expires (<= 0 when it has).
func TimeLeft(j *batchv1.Job, now time.Time) (time.Duration, error) {
	finished, err := FinishTime(j)
	if err != nil {
		return 0, err
	}
	return finished.Add(time.Duration(*j.Spec.TTLSecondsAfterFinished) * time.Second).Sub(now), nil
}

// Reconcile deletes job key once its TTL has expired, or requeues it for
// then.
func (c *Controller) Reconcile(ctx context.Context, key string) (controllers.Result, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return controllers.Result{}, nil
	}
	j, err := c.jobs.Jobs(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return controllers.Result{}, nil
	}
	if err != nil {
		return controllers.Result{}, err
	}
	if !needsCleanup(j) {
		return controllers.Result{}, nil
	}
	left, err := TimeLeft(j, c.clock.Now())
	if err != nil || left > 0 {
		return controllers.Result{RequeueAfter: max(left, 0)}, nil
	}
	// The TTL may have been changed since the cache saw the job: check the
	// live object before deleting it, and delete only that version.
	fresh, err := c.client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return controllers.Result{}, nil
	}
	if err != nil {
		return controllers.Result{}, err
	}
	if !needsCleanup(fresh) {
		return controllers.Result{}, nil
	}
	if left, err := TimeLeft(fresh, c.clock.Now()); err != nil || left > 0 {
		return controllers.Result{RequeueAfter: max(left, 0)}, nil
	}
	bg := metav1.DeletePropagationBackground
	err = c.client.BatchV1().Jobs(ns).Delete(ctx, name, metav1.DeleteOptions{
		PropagationPolicy: &bg,
		Preconditions:     &metav1.Preconditions{UID: &fresh.UID, ResourceVersion: &fresh.ResourceVersion},
	})
	if apierrors.IsNotFound(err) {
		return controllers.Result{}, nil
	}
	if err != nil {
		return controllers.Result{}, fmt.Errorf("delete expired job %s: %w", key, err)
	}
	c.log.Info("deleted finished job after its TTL", "job", key)
	return controllers.Result{}, nil
}
