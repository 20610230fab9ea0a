// Package deployment is the Deployment controller: it rolls pod templates
// out through ReplicaSets named <deployment>-<pod-template-hash>, with the
// RollingUpdate and Recreate strategies, revisions, history cleanup,
// pause, progress deadlines and status as upstream. See README.md.
package deployment

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"strconv"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/internal/podutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
)

// Name is upstream's name of the controller.
const Name = "deployment-controller"

var deploymentKind = appsv1.SchemeGroupVersion.WithKind("Deployment")

func metav1Time(t time.Time) metav1.Time { return metav1.NewTime(t) }

// Config is what the controller needs.
type Config struct {
	Client    kubernetes.Interface
	Informers informers.SharedInformerFactory
	Recorder  record.EventRecorder
	Logger    *slog.Logger
}

// Controller rolls out Deployments.
type Controller struct {
	client   kubernetes.Interface
	dLister  appslisters.DeploymentLister
	rsLister appslisters.ReplicaSetLister
	pods     corelisters.PodLister
	synced   []cache.InformerSynced
	rec      record.EventRecorder
	log      *slog.Logger
	queue    workqueue.TypedRateLimitingInterface[string]
	now      func() time.Time
}

var _ controllers.Controller = (*Controller)(nil)

// New returns the controller with its informers registered.
func New(cfg Config) (*Controller, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	d := cfg.Informers.Apps().V1().Deployments()
	rs := cfg.Informers.Apps().V1().ReplicaSets()
	pods := cfg.Informers.Core().V1().Pods()
	c := &Controller{
		client: cfg.Client, dLister: d.Lister(), rsLister: rs.Lister(), pods: pods.Lister(),
		synced: []cache.InformerSynced{d.Informer().HasSynced, rs.Informer().HasSynced, pods.Informer().HasSynced},
		rec:    cfg.Recorder, log: cfg.Logger.With("component", Name),
		queue: controllers.NewQueue("deployment"), now: time.Now,
	}
	if _, err := d.Informer().AddEventHandler(controllers.Enqueue(c.queue)); err != nil {
		return nil, err
	}
	rsHandler := func(obj any) { c.enqueueOwner(obj) }
	if _, err := rs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: rsHandler, DeleteFunc: rsHandler,
		UpdateFunc: func(o, n any) {
			if ref := metav1.GetControllerOf(o.(*appsv1.ReplicaSet)); ref != nil && !refEqual(ref, metav1.GetControllerOf(n.(*appsv1.ReplicaSet))) {
				c.enqueueOwner(o)
			}
			c.enqueueOwner(n)
		},
	}); err != nil {
		return nil, err
	}
	// Recreate waits for old pods to be gone.
	if _, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: c.podDeleted}); err != nil {
		return nil, err
	}
	return c, nil
}

func refEqual(a, b *metav1.OwnerReference) bool { return b != nil && a.UID == b.UID }

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

func (c *Controller) enqueueOwner(obj any) {
	rs, ok := obj.(*appsv1.ReplicaSet)
	if !ok {
		tomb, ok := obj.(cache.DeletedFinalStateUnknown)
		if !ok {
			return
		}
		if rs, ok = tomb.Obj.(*appsv1.ReplicaSet); !ok {
			return
		}
	}
	if ref := metav1.GetControllerOf(rs); ref != nil {
		if ref.Kind == "Deployment" {
			c.queue.Add(rs.Namespace + "/" + ref.Name)
		}
		return
	}
	ds, err := c.dLister.Deployments(rs.Namespace).List(labels.Everything())
	if err != nil {
		return
	}
	for _, d := range ds {
		if selectorOf(d).Matches(labels.Set(rs.Labels)) {
			c.queue.Add(rs.Namespace + "/" + d.Name)
		}
	}
}

func (c *Controller) podDeleted(obj any) {
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
	ref := metav1.GetControllerOf(p)
	if ref == nil || ref.Kind != "ReplicaSet" {
		return
	}
	if rs, err := c.rsLister.ReplicaSets(p.Namespace).Get(ref.Name); err == nil {
		c.enqueueOwner(rs)
	}
}

func selectorOf(d *appsv1.Deployment) labels.Selector {
	if d.Spec.Selector == nil || (len(d.Spec.Selector.MatchLabels) == 0 && len(d.Spec.Selector.MatchExpressions) == 0) {
		return labels.Nothing()
	}
	s, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return labels.Nothing()
	}
	return s
}

// Reconcile moves Deployment key one step towards its template.
func (c *Controller) Reconcile(ctx context.Context, key string) (controllers.Result, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return controllers.Result{}, nil
	}
	cached, err := c.dLister.Deployments(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return controllers.Result{}, nil
	}
	if err != nil {
		return controllers.Result{}, err
	}
	d := cached.DeepCopy()
	if selectorOf(d).Empty() {
		return controllers.Result{}, nil
	}
	rss, err := c.claimReplicaSets(ctx, d)
	if err != nil {
		return controllers.Result{}, err
	}
	if d.DeletionTimestamp != nil {
		newRS, old := c.splitNewOld(d, rss)
		return controllers.Result{}, c.writeStatus(ctx, d, append(old, newRS), newRS, false)
	}
	if err := c.checkPaused(ctx, d); err != nil {
		return controllers.Result{}, err
	}
	if d.Spec.Paused {
		return controllers.Result{}, c.syncScale(ctx, d, rss, false)
	}
	if c.scalingEvent(d, rss) {
		return controllers.Result{}, c.syncScale(ctx, d, rss, true)
	}
	if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		return c.rolloutRecreate(ctx, d, rss)
	}
	return c.rolloutRolling(ctx, d, rss)
}

// claimReplicaSets returns the ReplicaSets d controls, adopting matching
// orphans and releasing ones that no longer match.
func (c *Controller) claimReplicaSets(ctx context.Context, d *appsv1.Deployment) ([]*appsv1.ReplicaSet, error) {
	all, err := c.rsLister.ReplicaSets(d.Namespace).List(labels.Everything())
	if err != nil {
		return nil, err
	}
	sel := selectorOf(d)
	var out []*appsv1.ReplicaSet
	var errs []error
	for _, rs := range all {
		match := sel.Matches(labels.Set(rs.Labels))
		ref := metav1.GetControllerOf(rs)
		switch {
		case ref != nil && ref.UID == d.UID:
			if match || d.DeletionTimestamp != nil {
				out = append(out, rs)
				continue
			}
			cp := rs.DeepCopy()
			cp.OwnerReferences = removeOwner(cp.OwnerReferences, d.UID)
			if _, err := c.client.AppsV1().ReplicaSets(rs.Namespace).Update(ctx, cp, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
			}
		case ref == nil && match && d.DeletionTimestamp == nil && rs.DeletionTimestamp == nil:
			fresh, err := c.client.AppsV1().Deployments(d.Namespace).Get(ctx, d.Name, metav1.GetOptions{})
			if err != nil || fresh.UID != d.UID || fresh.DeletionTimestamp != nil {
				continue
			}
			cp := rs.DeepCopy()
			cp.OwnerReferences = append(cp.OwnerReferences, *podutil.NewControllerRef(d, deploymentKind))
			updated, err := c.client.AppsV1().ReplicaSets(rs.Namespace).Update(ctx, cp, metav1.UpdateOptions{})
			if err != nil {
				if !apierrors.IsNotFound(err) {
					errs = append(errs, err)
				}
				continue
			}
			out = append(out, updated)
		}
	}
	return out, errors.Join(errs...)
}

func removeOwner(refs []metav1.OwnerReference, uid any) []metav1.OwnerReference {
	var out []metav1.OwnerReference
	for _, r := range refs {
		if r.UID != uid {
			out = append(out, r)
		}
	}
	return out
}

// splitNewOld finds the ReplicaSet whose template is d's (the oldest one if
// several) and the others.
func (c *Controller) splitNewOld(d *appsv1.Deployment, rss []*appsv1.ReplicaSet) (*appsv1.ReplicaSet, []*appsv1.ReplicaSet) {
	sorted := append([]*appsv1.ReplicaSet(nil), rss...)
	sort.SliceStable(sorted, func(i, j int) bool { return olderRS(sorted[i], sorted[j]) })
	var newRS *appsv1.ReplicaSet
	var old []*appsv1.ReplicaSet
	for _, rs := range sorted {
		if newRS == nil && EqualIgnoreHash(&rs.Spec.Template, &d.Spec.Template) {
			newRS = rs
			continue
		}
		old = append(old, rs)
	}
	return newRS, old
}

// scalingEvent: an active ReplicaSet was sized for another replica count.
func (c *Controller) scalingEvent(d *appsv1.Deployment, rss []*appsv1.ReplicaSet) bool {
	for _, rs := range rss {
		if rsReplicas(rs) == 0 {
			continue
		}
		v, ok := rs.Annotations[DesiredReplicasAnnotation]
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(v, 10, 32); err == nil && int32(n) != replicas(d) {
			return true
		}
	}
	return false
}

// getNewRS returns the new ReplicaSet, syncing its revision, or creates it
// when create is set.
func (c *Controller) getNewRS(ctx context.Context, d *appsv1.Deployment, rss []*appsv1.ReplicaSet, create bool) (*appsv1.ReplicaSet, []*appsv1.ReplicaSet, error) {
	existing, old := c.splitNewOld(d, rss)
	revision := maxRevision(old) + 1
	revStr := strconv.FormatInt(revision, 10)
	if existing != nil {
		cp := existing.DeepCopy()
		changed := c.setRSAnnotations(d, cp, revStr, true)
		if changed {
			updated, err := c.client.AppsV1().ReplicaSets(cp.Namespace).Update(ctx, cp, metav1.UpdateOptions{})
			if err != nil {
				return nil, nil, err
			}
			existing = updated
		}
		if err := c.setDeploymentRevision(ctx, d, existing.Annotations[RevisionAnnotation]); err != nil {
			return nil, nil, err
		}
		st := d.Status
		if hasProgressDeadline(d) && getCondition(&st, appsv1.DeploymentProgressing) == nil {
			setCondition(&d.Status, condition(appsv1.DeploymentProgressing, corev1.ConditionTrue, ReasonFoundNewRS,
				fmt.Sprintf("Found new replica set %q", existing.Name), c.now()))
		}
		return existing, old, nil
	}
	if !create {
		return nil, old, nil
	}
	hash := ComputeHash(&d.Spec.Template, d.Status.CollisionCount)
	tmpl := *d.Spec.Template.DeepCopy()
	if tmpl.Labels == nil {
		tmpl.Labels = map[string]string{}
	}
	tmpl.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = hash
	sel := d.Spec.Selector.DeepCopy()
	if sel.MatchLabels == nil {
		sel.MatchLabels = map[string]string{}
	}
	sel.MatchLabels[appsv1.DefaultDeploymentUniqueLabelKey] = hash
	rsLabels := maps.Clone(d.Spec.Template.Labels)
	if rsLabels == nil {
		rsLabels = map[string]string{}
	}
	rsLabels[appsv1.DefaultDeploymentUniqueLabelKey] = hash
	zero := int32(0)
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name: d.Name + "-" + hash, Namespace: d.Namespace, Labels: rsLabels,
			OwnerReferences: []metav1.OwnerReference{*podutil.NewControllerRef(d, deploymentKind)},
		},
		Spec: appsv1.ReplicaSetSpec{Replicas: &zero, MinReadySeconds: d.Spec.MinReadySeconds, Selector: sel, Template: tmpl},
	}
	size := NewRSNewReplicas(d, old, rs)
	rs.Spec.Replicas = &size
	c.setRSAnnotations(d, rs, revStr, false)
	created, err := c.client.AppsV1().ReplicaSets(d.Namespace).Create(ctx, rs, metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		cur, gerr := c.client.AppsV1().ReplicaSets(d.Namespace).Get(ctx, rs.Name, metav1.GetOptions{})
		if gerr != nil {
			return nil, nil, gerr
		}
		if ref := metav1.GetControllerOf(cur); ref != nil && ref.UID == d.UID && EqualIgnoreHash(&cur.Spec.Template, &d.Spec.Template) {
			return cur, old, nil // our cache was behind
		}
		// A hash collision: bump collisionCount so the next name differs.
		n := int32(0)
		if d.Status.CollisionCount != nil {
			n = *d.Status.CollisionCount
		}
		n++
		d.Status.CollisionCount = &n
		if _, uerr := c.client.AppsV1().Deployments(d.Namespace).UpdateStatus(ctx, d, metav1.UpdateOptions{}); uerr != nil {
			return nil, nil, uerr
		}
		return nil, nil, fmt.Errorf("replica set name %s collides; collisionCount is now %d", rs.Name, n)
	case err != nil:
		msg := fmt.Sprintf("Failed to create new replica set %q: %v", rs.Name, err)
		c.event(d, corev1.EventTypeWarning, ReasonFailedRSCreate, "%s", msg)
		if hasProgressDeadline(d) {
			setCondition(&d.Status, condition(appsv1.DeploymentProgressing, corev1.ConditionFalse, ReasonFailedRSCreate, msg, c.now()))
			_, _ = c.client.AppsV1().Deployments(d.Namespace).UpdateStatus(ctx, d, metav1.UpdateOptions{})
		}
		return nil, nil, err
	}
	if size > 0 {
		c.event(d, corev1.EventTypeNormal, ScalingReplicaSet, "Scaled up replica set %s from 0 to %d", created.Name, size)
	}
	if hasProgressDeadline(d) {
		c2 := condition(appsv1.DeploymentProgressing, corev1.ConditionTrue, ReasonNewRSCreated, fmt.Sprintf("Created new replica set %q", created.Name), c.now())
		removeCondition(&d.Status, appsv1.DeploymentProgressing)
		d.Status.Conditions = append(d.Status.Conditions, c2)
	}
	return created, old, c.setDeploymentRevision(ctx, d, revStr)
}

// setRSAnnotations copies d's annotations to rs and sets the revision and
// replica annotations; it reports whether anything changed.
func (c *Controller) setRSAnnotations(d *appsv1.Deployment, rs *appsv1.ReplicaSet, revision string, existing bool) bool {
	if rs.Annotations == nil {
		rs.Annotations = map[string]string{}
	}
	changed := false
	for k, v := range d.Annotations {
		switch k {
		case lastAppliedAnnotation, RevisionAnnotation, RevisionHistoryAnnotation, DesiredReplicasAnnotation, MaxReplicasAnnotation, rollbackToAnnotation:
			continue
		}
		if rs.Annotations[k] != v {
			rs.Annotations[k] = v
			changed = true
		}
	}
	old := rs.Annotations[RevisionAnnotation]
	oldN, _ := strconv.ParseInt(old, 10, 64)
	newN, _ := strconv.ParseInt(revision, 10, 64)
	if oldN < newN {
		if old != "" {
			h := rs.Annotations[RevisionHistoryAnnotation]
			if h == "" {
				h = old
			} else {
				h += "," + old
			}
			rs.Annotations[RevisionHistoryAnnotation] = h
		}
		rs.Annotations[RevisionAnnotation] = revision
		changed = true
	}
	if !existing || rs.Annotations[DesiredReplicasAnnotation] == "" {
		changed = setReplicasAnnotations(d, rs) || changed
	}
	return changed
}

func setReplicasAnnotations(d *appsv1.Deployment, rs *appsv1.ReplicaSet) bool {
	surge, _ := fenceposts(d)
	want, maxR := strconv.Itoa(int(replicas(d))), strconv.Itoa(int(replicas(d)+surge))
	if rs.Annotations[DesiredReplicasAnnotation] == want && rs.Annotations[MaxReplicasAnnotation] == maxR {
		return false
	}
	if rs.Annotations == nil {
		rs.Annotations = map[string]string{}
	}
	rs.Annotations[DesiredReplicasAnnotation] = want
	rs.Annotations[MaxReplicasAnnotation] = maxR
	return true
}

// setDeploymentRevision records the new ReplicaSet's revision on d.
func (c *Controller) setDeploymentRevision(ctx context.Context, d *appsv1.Deployment, revision string) error {
	if revision == "" || d.Annotations[RevisionAnnotation] == revision {
		return nil
	}
	if d.Annotations == nil {
		d.Annotations = map[string]string{}
	}
	d.Annotations[RevisionAnnotation] = revision
	status := d.Status
	updated, err := c.client.AppsV1().Deployments(d.Namespace).Update(ctx, d, metav1.UpdateOptions{})
	if err != nil {
		return err
	}
	*d = *updated
	d.Status = status // keep conditions computed in this sync
	return nil
}

// scaleRS sets rs to size (and the replica annotations) and records the event.
func (c *Controller) scaleRS(ctx context.Context, d *appsv1.Deployment, rs *appsv1.ReplicaSet, size int32) (*appsv1.ReplicaSet, error) {
	cp := rs.DeepCopy()
	sizeChanged := rsReplicas(rs) != size
	annChanged := setReplicasAnnotations(d, cp)
	if !sizeChanged && !annChanged {
		return rs, nil
	}
	cp.Spec.Replicas = &size
	updated, err := c.client.AppsV1().ReplicaSets(cp.Namespace).Update(ctx, cp, metav1.UpdateOptions{})
	if err != nil {
		return nil, err
	}
	if sizeChanged {
		op := "up"
		if size < rsReplicas(rs) {
			op = "down"
		}
		c.event(d, corev1.EventTypeNormal, ScalingReplicaSet, "Scaled %s replica set %s from %d to %d", op, rs.Name, rsReplicas(rs), size)
	}
	return updated, nil
}

func (c *Controller) rolloutRolling(ctx context.Context, d *appsv1.Deployment, rss []*appsv1.ReplicaSet) (controllers.Result, error) {
	newRS, old, err := c.getNewRS(ctx, d, rss, true)
	if err != nil {
		return controllers.Result{}, err
	}
	all := append(append([]*appsv1.ReplicaSet(nil), old...), newRS)
	// Scale up the new ReplicaSet.
	if want := replicas(d); rsReplicas(newRS) != want {
		size := want
		if rsReplicas(newRS) < want {
			size = NewRSNewReplicas(d, all, newRS)
		}
		if size != rsReplicas(newRS) {
			if _, err := c.scaleRS(ctx, d, newRS, size); err != nil {
				return controllers.Result{}, err
			}
			return c.syncRolloutStatus(ctx, d, all, newRS)
		}
	}
	// Scale down old ones.
	plan := ScaleDownPlan(d, activeRSs(old), newRS)
	scaled := false
	for _, rs := range old {
		if size, ok := plan[rs.Name]; ok && size != rsReplicas(rs) {
			if _, err := c.scaleRS(ctx, d, rs, size); err != nil {
				return controllers.Result{}, err
			}
			scaled = true
		}
	}
	if !scaled {
		st := calculateStatus(d, all, newRS, c.now())
		if complete(d, &st) {
			if err := c.cleanup(ctx, d, old); err != nil {
				return controllers.Result{}, err
			}
		}
	}
	return c.syncRolloutStatus(ctx, d, all, newRS)
}

func activeRSs(rss []*appsv1.ReplicaSet) []*appsv1.ReplicaSet {
	var out []*appsv1.ReplicaSet
	for _, rs := range rss {
		if rsReplicas(rs) > 0 {
			out = append(out, rs)
		}
	}
	return out
}

func (c *Controller) rolloutRecreate(ctx context.Context, d *appsv1.Deployment, rss []*appsv1.ReplicaSet) (controllers.Result, error) {
	newRS, old, err := c.getNewRS(ctx, d, rss, false)
	if err != nil {
		return controllers.Result{}, err
	}
	all := append(append([]*appsv1.ReplicaSet(nil), old...), newRS)
	scaled := false
	for _, rs := range activeRSs(old) {
		if _, err := c.scaleRS(ctx, d, rs, 0); err != nil {
			return controllers.Result{}, err
		}
		scaled = true
	}
	if scaled {
		return c.syncRolloutStatus(ctx, d, all, newRS)
	}
	running, err := c.oldPodsRunning(d, old, newRS)
	if err != nil {
		return controllers.Result{}, err
	}
	if running {
		return c.syncRolloutStatus(ctx, d, all, newRS)
	}
	if newRS == nil {
		if newRS, old, err = c.getNewRS(ctx, d, rss, true); err != nil {
			return controllers.Result{}, err
		}
		all = append(append([]*appsv1.ReplicaSet(nil), old...), newRS)
	}
	if rsReplicas(newRS) != replicas(d) {
		if _, err := c.scaleRS(ctx, d, newRS, replicas(d)); err != nil {
			return controllers.Result{}, err
		}
		return c.syncRolloutStatus(ctx, d, all, newRS)
	}
	st := calculateStatus(d, all, newRS, c.now())
	if complete(d, &st) {
		if err := c.cleanup(ctx, d, old); err != nil {
			return controllers.Result{}, err
		}
	}
	return c.syncRolloutStatus(ctx, d, all, newRS)
}

// oldPodsRunning: some pod of an old ReplicaSet still exists and is not
// finished (Recreate waits for them).
func (c *Controller) oldPodsRunning(d *appsv1.Deployment, old []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) (bool, error) {
	for _, rs := range old {
		if rs.Status.Replicas > 0 {
			return true, nil
		}
	}
	pods, err := c.pods.Pods(d.Namespace).List(selectorOf(d))
	if err != nil {
		return false, err
	}
	for _, p := range pods {
		ref := metav1.GetControllerOf(p)
		if ref == nil || (newRS != nil && ref.UID == newRS.UID) {
			continue
		}
		for _, rs := range old {
			if ref.UID == rs.UID && !podutil.IsTerminated(p) {
				return true, nil
			}
		}
	}
	return false, nil
}

// syncScale handles paused deployments and replica changes mid-rollout:
// it resizes ReplicaSets without starting a rollout, proportionally when
// several are active.
func (c *Controller) syncScale(ctx context.Context, d *appsv1.Deployment, rss []*appsv1.ReplicaSet, _ bool) error {
	newRS, old, err := c.getNewRS(ctx, d, rss, false)
	if err != nil {
		return err
	}
	all := append(append([]*appsv1.ReplicaSet(nil), old...), newRS)
	if err := c.scale(ctx, d, newRS, old); err != nil {
		return err
	}
	if d.Spec.Paused {
		st := calculateStatus(d, all, newRS, c.now())
		if complete(d, &st) {
			if err := c.cleanup(ctx, d, old); err != nil {
				return err
			}
		}
	}
	return c.writeStatus(ctx, d, all, newRS, false)
}

func (c *Controller) scale(ctx context.Context, d *appsv1.Deployment, newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) error {
	active := activeRSs(append(append([]*appsv1.ReplicaSet(nil), old...), newRS))
	want := replicas(d)
	if len(active) <= 1 {
		target := newRS
		if len(active) == 1 {
			target = active[0]
		}
		if target == nil {
			return nil
		}
		_, err := c.scaleRS(ctx, d, target, want)
		return err
	}
	// A saturated new ReplicaSet (sized and annotated for want, all of it
	// available) leaves nothing to the old ones.
	if saturated(d, newRS) {
		for _, rs := range activeRSs(old) {
			if _, err := c.scaleRS(ctx, d, rs, 0); err != nil {
				return err
			}
		}
		return nil
	}
	// Spread the difference to want + maxSurge over the active ReplicaSets
	// in proportion (a Recreate rollout keeps the sizes: it scales the old
	// ones down itself). Every one is written even when its size stays:
	// that moves its desired-replicas annotation to want, which ends the
	// scaling event; left behind, every sync would be a scaling event again
	// and the rollout would never scale the old ones down.
	toAdd := int32(0)
	if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		allowed := int32(0)
		if want > 0 {
			surge, _ := fenceposts(d)
			allowed = want + surge
		}
		toAdd = allowed - sumSpec(active)
	}
	sizes := ProportionalSizes(active, toAdd) // toAdd 0: the sizes as they are
	for _, rs := range active {
		if _, err := c.scaleRS(ctx, d, rs, sizes[rs.Name]); err != nil {
			return err
		}
	}
	return nil
}

// saturated: rs is sized and annotated for d's replicas and all of them
// are available (upstream's IsSaturated).
func saturated(d *appsv1.Deployment, rs *appsv1.ReplicaSet) bool {
	if rs == nil {
		return false
	}
	want := replicas(d)
	return rsReplicas(rs) == want && rs.Annotations[DesiredReplicasAnnotation] == strconv.Itoa(int(want)) && rs.Status.AvailableReplicas == want
}

// ProportionalSizes spreads toAdd (which may be negative) over the active
// ReplicaSets in proportion to their sizes; the rounding leftover goes to
// (or comes from) the largest, newest on ties.
func ProportionalSizes(active []*appsv1.ReplicaSet, toAdd int32) map[string]int32 {
	sorted := append([]*appsv1.ReplicaSet(nil), active...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if rsReplicas(sorted[i]) != rsReplicas(sorted[j]) {
			return rsReplicas(sorted[i]) > rsReplicas(sorted[j])
		}
		return olderRS(sorted[j], sorted[i])
	})
	total := sumSpec(sorted)
	out := map[string]int32{}
	var added int32
	for _, rs := range sorted {
		share := int32(0)
		if total > 0 {
			share = int32(float64(rsReplicas(rs)) * float64(toAdd) / float64(total))
		}
		if toAdd > 0 {
			share = min(share, toAdd-added)
		} else {
			share = max(share, toAdd-added)
		}
		out[rs.Name] = rsReplicas(rs) + share
		added += share
	}
	if left := toAdd - added; left != 0 && len(sorted) > 0 {
		first := sorted[0].Name
		out[first] = max(out[first]+left, 0)
	}
	return out
}

// cleanup deletes old ReplicaSets beyond revisionHistoryLimit, oldest
// revision first, only those with no replicas left.
func (c *Controller) cleanup(ctx context.Context, d *appsv1.Deployment, old []*appsv1.ReplicaSet) error {
	limit := int32(defaultRevisionHistoryLimt)
	if d.Spec.RevisionHistoryLimit != nil {
		limit = *d.Spec.RevisionHistoryLimit
	}
	var dead []*appsv1.ReplicaSet
	for _, rs := range old {
		if rs.DeletionTimestamp == nil {
			dead = append(dead, rs)
		}
	}
	diff := int32(len(dead)) - limit
	if diff <= 0 {
		return nil
	}
	sort.SliceStable(dead, func(i, j int) bool {
		ri, rj := Revision(dead[i]), Revision(dead[j])
		if ri != rj {
			return ri < rj
		}
		return olderRS(dead[i], dead[j])
	})
	for _, rs := range dead {
		if diff <= 0 {
			break
		}
		if rs.Status.Replicas != 0 || rsReplicas(rs) != 0 || rs.Generation > rs.Status.ObservedGeneration {
			continue
		}
		if err := c.client.AppsV1().ReplicaSets(rs.Namespace).Delete(ctx, rs.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		diff--
	}
	return nil
}

// checkPaused sets the Progressing condition to DeploymentPaused or
// DeploymentResumed when spec.paused flipped.
func (c *Controller) checkPaused(ctx context.Context, d *appsv1.Deployment) error {
	if !hasProgressDeadline(d) {
		return nil
	}
	cond := getCondition(&d.Status, appsv1.DeploymentProgressing)
	pausedCond := cond != nil && cond.Reason == ReasonPaused
	var want *appsv1.DeploymentCondition
	switch {
	case d.Spec.Paused && !pausedCond:
		x := condition(appsv1.DeploymentProgressing, corev1.ConditionUnknown, ReasonPaused, "Deployment is paused", c.now())
		want = &x
	case !d.Spec.Paused && pausedCond:
		x := condition(appsv1.DeploymentProgressing, corev1.ConditionUnknown, ReasonResumed, "Deployment is resumed", c.now())
		want = &x
	}
	if want == nil {
		return nil
	}
	setCondition(&d.Status, *want)
	updated, err := c.client.AppsV1().Deployments(d.Namespace).UpdateStatus(ctx, d, metav1.UpdateOptions{})
	if err != nil {
		return err
	}
	*d = *updated
	return nil
}

// syncRolloutStatus writes status with the Progressing condition and asks
// to be woken at the progress deadline.
func (c *Controller) syncRolloutStatus(ctx context.Context, d *appsv1.Deployment, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) (controllers.Result, error) {
	if err := c.writeStatus(ctx, d, all, newRS, true); err != nil {
		return controllers.Result{}, err
	}
	if !hasProgressDeadline(d) {
		return controllers.Result{}, nil
	}
	cond := getCondition(&d.Status, appsv1.DeploymentProgressing)
	if cond == nil || cond.Reason == ReasonNewRSAvailable || cond.Reason == ReasonTimedOut || cond.Status != corev1.ConditionTrue {
		return controllers.Result{}, nil
	}
	after := cond.LastUpdateTime.Add(time.Duration(*d.Spec.ProgressDeadlineSeconds)*time.Second).Sub(c.now()) + time.Second
	return controllers.Result{RequeueAfter: max(after, time.Second)}, nil
}

func (c *Controller) writeStatus(ctx context.Context, d *appsv1.Deployment, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet, rollout bool) error {
	now := c.now()
	st := calculateStatus(d, all, newRS, now)
	if !hasProgressDeadline(d) {
		removeCondition(&st, appsv1.DeploymentProgressing)
	}
	cur := getCondition(&st, appsv1.DeploymentProgressing)
	isComplete := st.Replicas == st.UpdatedReplicas && cur != nil && cur.Reason == ReasonNewRSAvailable
	if rollout && hasProgressDeadline(d) && !isComplete && newRS != nil {
		switch {
		case complete(d, &st):
			setProgressing(&st, corev1.ConditionTrue, ReasonNewRSAvailable, fmt.Sprintf("ReplicaSet %q has successfully progressed.", newRS.Name), now)
		case progressing(d, &st):
			setProgressing(&st, corev1.ConditionTrue, ReasonRSUpdated, fmt.Sprintf("ReplicaSet %q is progressing.", newRS.Name), now)
		case timedOut(d, &st, now):
			setProgressing(&st, corev1.ConditionFalse, ReasonTimedOut, fmt.Sprintf("ReplicaSet %q has timed out progressing.", newRS.Name), now)
			if cur == nil || cur.Reason != ReasonTimedOut {
				c.event(d, corev1.EventTypeWarning, ReasonTimedOut, "ReplicaSet %q has timed out progressing.", newRS.Name)
			}
		}
	}
	stored := d.Status
	if cached, err := c.dLister.Deployments(d.Namespace).Get(d.Name); err == nil && cached.UID == d.UID {
		stored = cached.Status
	}
	if statusEqual(stored, st) {
		return nil
	}
	cp := d.DeepCopy()
	cp.Status = st
	updated, err := c.client.AppsV1().Deployments(d.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("update deployment status: %w", err)
	}
	*d = *updated
	return nil
}

// setProgressing updates the Progressing condition; an update with the same
// status keeps the transition time and refreshes lastUpdateTime.
func setProgressing(st *appsv1.DeploymentStatus, s corev1.ConditionStatus, reason, msg string, now time.Time) {
	c := condition(appsv1.DeploymentProgressing, s, reason, msg, now)
	if cur := getCondition(st, appsv1.DeploymentProgressing); cur != nil && cur.Status == s {
		c.LastTransitionTime = cur.LastTransitionTime
	}
	removeCondition(st, appsv1.DeploymentProgressing)
	st.Conditions = append(st.Conditions, c)
}

func statusEqual(a, b appsv1.DeploymentStatus) bool {
	sortConds := func(cs []appsv1.DeploymentCondition) []appsv1.DeploymentCondition {
		cs = append([]appsv1.DeploymentCondition(nil), cs...)
		sort.Slice(cs, func(i, j int) bool { return cs[i].Type < cs[j].Type })
		return cs
	}
	a.Conditions, b.Conditions = sortConds(a.Conditions), sortConds(b.Conditions)
	return apiequality.Semantic.DeepEqual(a, b)
}

func (c *Controller) event(d *appsv1.Deployment, typ, reason, format string, args ...any) {
	if c.rec == nil {
		return
	}
	ref := &corev1.ObjectReference{Kind: "Deployment", APIVersion: "apps/v1", Namespace: d.Namespace, Name: d.Name, UID: d.UID, ResourceVersion: d.ResourceVersion}
	c.rec.Eventf(ref, typ, reason, format, args...)
}
