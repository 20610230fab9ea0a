// Package disruption is the disruption controller: it keeps the status of
// every PodDisruptionBudget (currentHealthy, desiredHealthy, expectedPods,
// disruptionsAllowed, disruptedPods, observedGeneration and the
// DisruptionAllowed condition) in line with the pods its selector matches,
// as upstream's. The API server's pods/eviction spends the budget it
// computes. See README.md.
package disruption

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/internal/scales"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	policylisters "k8s.io/client-go/listers/policy/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
)

// Name is the controller's upstream name.
const Name = "disruption-controller"

// Config is what the controller needs.
type Config struct {
	Client    kubernetes.Interface
	Informers informers.SharedInformerFactory
	Recorder  record.EventRecorder
	Logger    *slog.Logger
	Clock     clock.PassiveClock
}

// Controller maintains PodDisruptionBudget status.
type Controller struct {
	client   kubernetes.Interface
	pdbs     policylisters.PodDisruptionBudgetLister
	pods     corelisters.PodLister
	rcs      corelisters.ReplicationControllerLister
	rss      appslisters.ReplicaSetLister
	deps     appslisters.DeploymentLister
	sss      appslisters.StatefulSetLister
	scales   *scales.Client
	synced   []cache.InformerSynced
	recorder record.EventRecorder
	log      *slog.Logger
	clock    clock.PassiveClock
	queue    workqueue.TypedRateLimitingInterface[string]
}

var _ controllers.Controller = (*Controller)(nil)

// New returns the controller with its informer handlers registered.
func New(cfg Config) (*Controller, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Recorder == nil {
		cfg.Recorder = &record.FakeRecorder{}
	}
	f := cfg.Informers
	pdbInf := f.Policy().V1().PodDisruptionBudgets()
	podInf := f.Core().V1().Pods()
	rcInf := f.Core().V1().ReplicationControllers()
	rsInf := f.Apps().V1().ReplicaSets()
	depInf := f.Apps().V1().Deployments()
	ssInf := f.Apps().V1().StatefulSets()
	c := &Controller{
		client: cfg.Client, pdbs: pdbInf.Lister(), pods: podInf.Lister(), rcs: rcInf.Lister(),
		rss: rsInf.Lister(), deps: depInf.Lister(), sss: ssInf.Lister(), scales: scales.New(cfg.Client),
		synced: []cache.InformerSynced{pdbInf.Informer().HasSynced, podInf.Informer().HasSynced, rcInf.Informer().HasSynced,
			rsInf.Informer().HasSynced, depInf.Informer().HasSynced, ssInf.Informer().HasSynced},
		recorder: cfg.Recorder, log: cfg.Logger.With("component", Name), clock: cfg.Clock,
		queue: controllers.NewQueue("disruption"),
	}
	if _, err := pdbInf.Informer().AddEventHandler(controllers.Enqueue(c.queue)); err != nil {
		return nil, err
	}
	podHandler := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if pod, ok := obj.(*corev1.Pod); ok {
			c.enqueueForPod(pod)
		}
	}
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    podHandler,
		UpdateFunc: func(old, cur any) { podHandler(old); podHandler(cur) },
		DeleteFunc: podHandler,
	}); err != nil {
		return nil, err
	}
	return c, nil
}

// Name implements controllers.Controller.
func (c *Controller) Name() string { return Name }

// Run implements controllers.Controller.
func (c *Controller) Run(ctx context.Context, workers int) error {
	if !controllers.WaitForSync(ctx, c.synced...) {
		return ctx.Err()
	}
	controllers.RunWorkers(ctx, c.queue, workers, c.log, c.Reconcile)
	return nil
}

// enqueueForPod queues the budgets whose selector matches pod.
func (c *Controller) enqueueForPod(pod *corev1.Pod) {
	for _, pdb := range c.budgetsFor(pod) {
		if key, err := cache.MetaNamespaceKeyFunc(pdb); err == nil {
			c.queue.Add(key)
		}
	}
}

func (c *Controller) budgetsFor(pod *corev1.Pod) []*policyv1.PodDisruptionBudget {
	all, err := c.pdbs.PodDisruptionBudgets(pod.Namespace).List(labels.Everything())
	if err != nil {
		return nil
	}
	var out []*policyv1.PodDisruptionBudget
	for _, pdb := range all {
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		out = append(out, pdb)
	}
	return out
}

// Reconcile recomputes the status of budget key.
func (c *Controller) Reconcile(ctx context.Context, key string) (controllers.Result, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return controllers.Result{}, nil
	}
	pdb, err := c.pdbs.PodDisruptionBudgets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return controllers.Result{}, nil
	}
	if err != nil {
		return controllers.Result{}, err
	}
	recheck, err := c.trySync(ctx, pdb)
	if err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return controllers.Result{}, err
		}
		c.log.Warn("sync failed; no disruptions allowed", "pdb", key, "err", err)
		if ferr := c.failSafe(ctx, pdb, err); ferr != nil {
			return controllers.Result{}, ferr
		}
		return controllers.Result{}, err
	}
	if recheck != nil {
		return controllers.Result{RequeueAfter: max(recheck.Sub(c.clock.Now()), time.Second)}, nil
	}
	return controllers.Result{}, nil
}

func (c *Controller) podsFor(pdb *policyv1.PodDisruptionBudget) ([]*corev1.Pod, error) {
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil {
		return nil, err
	}
	return c.pods.Pods(pdb.Namespace).List(sel)
}

func (c *Controller) trySync(ctx context.Context, pdb *policyv1.PodDisruptionBudget) (*time.Time, error) {
	pods, err := c.podsFor(pdb)
	if err != nil {
		c.recorder.Eventf(pdb, corev1.EventTypeWarning, "NoPods", "Failed to get pods: %v", err)
		return nil, err
	}
	if len(pods) == 0 {
		c.recorder.Event(pdb, corev1.EventTypeNormal, "NoPods", "No matching pods found")
	}
	expected, desired, unmanaged, err := ExpectedCounts(pdb, pods, c.scaleFinder(ctx))
	if err != nil {
		c.recorder.Eventf(pdb, corev1.EventTypeWarning, "CalculateExpectedPodCountFailed", "Failed to calculate the number of expected pods: %v", err)
		return nil, err
	}
	if len(unmanaged) > 0 {
		c.recorder.Eventf(pdb, corev1.EventTypeWarning, "UnmanagedPods", "Pods selected by this PodDisruptionBudget (selector: %v) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value. Unmanaged pods: %s", pdb.Spec.Selector, strings.Join(unmanaged, ", "))
	}
	now := c.clock.Now()
	disrupted, recheck, overdue := DisruptedPods(pdb, pods, now)
	for _, p := range overdue {
		c.recorder.Eventf(pdb, corev1.EventTypeWarning, "NotDeleted", "Pod %s/%s was expected by PDB %s/%s to be deleted but it wasn't", pdb.Namespace, p, pdb.Namespace, pdb.Name)
	}
	healthy := CountHealthy(pods, disrupted, now)
	st := Status(pdb, healthy, desired, expected, disrupted)
	if pdb.Status.CurrentHealthy == st.CurrentHealthy && pdb.Status.DesiredHealthy == st.DesiredHealthy &&
		pdb.Status.ExpectedPods == st.ExpectedPods && pdb.Status.DisruptionsAllowed == st.DisruptionsAllowed &&
		apiequality.Semantic.DeepEqual(pdb.Status.DisruptedPods, st.DisruptedPods) &&
		pdb.Status.ObservedGeneration == pdb.Generation && conditionUpToDate(pdb) {
		return recheck, nil
	}
	next := pdb.DeepCopy()
	next.Status = st
	_, err = c.client.PolicyV1().PodDisruptionBudgets(pdb.Namespace).UpdateStatus(ctx, next, metav1.UpdateOptions{})
	return recheck, err
}

// failSafe allows no disruption when the status cannot be computed.
func (c *Controller) failSafe(ctx context.Context, pdb *policyv1.PodDisruptionBudget, cause error) error {
	next := pdb.DeepCopy()
	next.Status.DisruptionsAllowed = 0
	if next.Status.Conditions == nil {
		next.Status.Conditions = []metav1.Condition{}
	}
	apimeta.SetStatusCondition(&next.Status.Conditions, metav1.Condition{
		Type: policyv1.DisruptionAllowedCondition, Status: metav1.ConditionFalse, Reason: policyv1.SyncFailedReason,
		Message: cause.Error(), ObservedGeneration: next.Status.ObservedGeneration,
	})
	_, err := c.client.PolicyV1().PodDisruptionBudgets(pdb.Namespace).UpdateStatus(ctx, next, metav1.UpdateOptions{})
	return err
}

func isApps(ref *metav1.OwnerReference, kind string) bool {
	if ref.Kind != kind {
		return false
	}
	g := ref.APIVersion
	if i := strings.Index(g, "/"); i >= 0 {
		g = g[:i]
	} else {
		g = ""
	}
	return g == "apps" || g == "extensions"
}

// scaleFinder resolves controllers as upstream does: a
// ReplicationController, a Deployment through the ReplicaSet it controls,
// a ReplicaSet, a StatefulSet (from the informers' caches), and any other
// kind through its scale subresource (a custom resource with
// subresources.scale), whose uid must be the reference's. A kind without
// one, or gone, is not found: its pods are unmanaged.
func (c *Controller) scaleFinder(ctx context.Context) ScaleFinder {
	return func(ref *metav1.OwnerReference, ns string) (types.UID, int32, bool, error) {
		if uid, n, found, known := c.builtinScale(ref, ns); known {
			return uid, n, found, nil
		}
		s, _, err := c.scales.Get(ctx, ns, ref.APIVersion, ref.Kind, ref.Name)
		switch {
		case apierrors.IsNotFound(err) || apimeta.IsNoMatchError(err) || apierrors.IsMethodNotSupported(err):
			return "", 0, false, nil
		case err != nil:
			return "", 0, false, err
		case s.UID != ref.UID:
			return "", 0, false, nil
		}
		return s.UID, s.Spec.Replicas, true, nil
	}
}

// builtinScale resolves the built-in controllers from the informers'
// caches; known is false for other kinds.
func (c *Controller) builtinScale(ref *metav1.OwnerReference, ns string) (uid types.UID, scale int32, found, known bool) {
	switch {
	case ref.Kind == "ReplicationController" && (ref.APIVersion == "v1" || ref.APIVersion == ""):
		rc, err := c.rcs.ReplicationControllers(ns).Get(ref.Name)
		if err != nil || rc.UID != ref.UID {
			return "", 0, false, true
		}
		return rc.UID, replicas(rc.Spec.Replicas), true, true
	case isApps(ref, kindRS.Kind):
		rs, err := c.rss.ReplicaSets(ns).Get(ref.Name)
		if err != nil || rs.UID != ref.UID {
			return "", 0, false, true
		}
		if owner := metav1.GetControllerOf(rs); owner != nil && owner.Kind == kindDep.Kind {
			if !isApps(owner, kindDep.Kind) {
				return "", 0, false, true
			}
			d, err := c.deps.Deployments(ns).Get(owner.Name)
			if err != nil || d.UID != owner.UID {
				return "", 0, false, true
			}
			return d.UID, replicas(d.Spec.Replicas), true, true
		}
		return rs.UID, replicas(rs.Spec.Replicas), true, true
	case isApps(ref, kindSS.Kind):
		ss, err := c.sss.StatefulSets(ns).Get(ref.Name)
		if err != nil || ss.UID != ref.UID {
			return "", 0, false, true
		}
		return ss.UID, replicas(ss.Spec.Replicas), true, true
	}
	return "", 0, false, false
}
