// Package daemonset is the DaemonSet controller: one pod on each node the
// DaemonSet's node selector, node affinity and tolerations admit, placed by
// the scheduler through required node affinity on metadata.name, with
// RollingUpdate (maxUnavailable, maxSurge) and OnDelete updates,
// ControllerRevisions as history, and status. See README.md.
package daemonset

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/internal/history"
	"github.com/skiffhq/skiff/controlplane/controllers/internal/podutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
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

// Name is the controller's upstream name.
const Name = "daemonset-controller"

// Event reasons, as upstream.
const (
	SuccessfulCreate = "SuccessfulCreate"
	FailedCreate     = "FailedCreate"
	SuccessfulDelete = "SuccessfulDelete"
	FailedDelete     = "FailedDelete"
	FailedDaemonPod  = "FailedDaemonPod"
)

// burstReplicas caps the creates of one sync (upstream's 250).
const burstReplicas = 250

// Config is what the controller needs.
type Config struct {
	Client    kubernetes.Interface
	Informers informers.SharedInformerFactory
	Recorder  record.EventRecorder
	Logger    *slog.Logger
}

// Controller reconciles DaemonSets.
type Controller struct {
	client  kubernetes.Interface
	sets    appslisters.DaemonSetLister
	podInf  cache.SharedIndexInformer
	nodes   corelisters.NodeLister
	revs    appslisters.ControllerRevisionLister
	synced  []cache.InformerSynced
	rec     record.EventRecorder
	log     *slog.Logger
	queue   workqueue.TypedRateLimitingInterface[string]
	exp     *expectations
	history history.Client
	now     func() time.Time
}

var _ controllers.Controller = (*Controller)(nil)

// New returns the controller with its informer handlers registered.
func New(cfg Config) (*Controller, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	f := cfg.Informers
	sets, pods, nodes, revs := f.Apps().V1().DaemonSets(), f.Core().V1().Pods(), f.Core().V1().Nodes(), f.Apps().V1().ControllerRevisions()
	c := &Controller{
		client: cfg.Client, sets: sets.Lister(), podInf: pods.Informer(), nodes: nodes.Lister(), revs: revs.Lister(),
		synced: []cache.InformerSynced{sets.Informer().HasSynced, pods.Informer().HasSynced, nodes.Informer().HasSynced, revs.Informer().HasSynced},
		rec:    cfg.Recorder, log: cfg.Logger.With("component", Name),
		queue: controllers.NewQueue("daemonset"), exp: newExpectations(), history: history.Client{Client: cfg.Client}, now: time.Now,
	}
	if err := podutil.AddControllerIndex(c.podInf); err != nil {
		return nil, err
	}
	h := controllers.Enqueue(c.queue)
	h.DeleteFunc = func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.exp.forget(key)
			c.queue.Add(key)
		}
	}
	if _, err := sets.Informer().AddEventHandler(h); err != nil {
		return nil, err
	}
	if _, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.addPod, UpdateFunc: c.updatePod, DeleteFunc: c.deletePod,
	}); err != nil {
		return nil, err
	}
	if _, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { c.enqueueAll() },
		UpdateFunc: func(o, n any) {
			if nodeChanged(o.(*corev1.Node), n.(*corev1.Node)) {
				c.enqueueAll()
			}
		},
		DeleteFunc: func(any) { c.enqueueAll() },
	}); err != nil {
		return nil, err
	}
	if _, err := revs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj any) {
			if o := metaOf(obj); o != nil {
				if key := c.ownerKey(o); key != "" {
					c.queue.Add(key)
				}
			}
		},
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

// nodeChanged reports a node update that can change where daemon pods
// belong: labels, taints, cordoning or conditions (heartbeats ignored).
func nodeChanged(old, cur *corev1.Node) bool {
	if !labels.Equals(old.Labels, cur.Labels) || old.Spec.Unschedulable != cur.Spec.Unschedulable || len(old.Spec.Taints) != len(cur.Spec.Taints) {
		return true
	}
	for i := range old.Spec.Taints {
		a, b := old.Spec.Taints[i], cur.Spec.Taints[i]
		if a.Key != b.Key || a.Value != b.Value || a.Effect != b.Effect {
			return true
		}
	}
	if len(old.Status.Conditions) != len(cur.Status.Conditions) {
		return true
	}
	for i := range old.Status.Conditions {
		if old.Status.Conditions[i].Type != cur.Status.Conditions[i].Type || old.Status.Conditions[i].Status != cur.Status.Conditions[i].Status {
			return true
		}
	}
	return false
}

func (c *Controller) enqueueAll() {
	all, err := c.sets.List(labels.Everything())
	if err != nil {
		return
	}
	for _, ds := range all {
		c.queue.Add(ds.Namespace + "/" + ds.Name)
	}
}

func metaOf(obj any) metav1.Object {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	m, _ := obj.(metav1.Object)
	return m
}

// ownerKey is the key of the DaemonSet controlling o, or "".
func (c *Controller) ownerKey(o metav1.Object) string {
	ref := metav1.GetControllerOf(o)
	if ref == nil || ref.Kind != GVK.Kind || ref.APIVersion != GVK.GroupVersion().String() {
		return ""
	}
	ds, err := c.sets.DaemonSets(o.GetNamespace()).Get(ref.Name)
	if err != nil || ds.UID != ref.UID {
		return ""
	}
	return o.GetNamespace() + "/" + ds.Name
}

func (c *Controller) enqueueMatching(p *corev1.Pod) {
	all, err := c.sets.DaemonSets(p.Namespace).List(labels.Everything())
	if err != nil {
		return
	}
	for _, ds := range all {
		if sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector); err == nil && !sel.Empty() && sel.Matches(labels.Set(p.Labels)) {
			c.queue.Add(ds.Namespace + "/" + ds.Name)
		}
	}
}

func (c *Controller) addPod(obj any) {
	p := obj.(*corev1.Pod)
	if p.DeletionTimestamp != nil {
		c.deletePod(p)
		return
	}
	if metav1.GetControllerOf(p) == nil {
		c.enqueueMatching(p)
		return
	}
	if key := c.ownerKey(p); key != "" {
		c.exp.creationObserved(key)
		c.queue.Add(key)
	}
}

func (c *Controller) updatePod(oldObj, newObj any) {
	old, cur := oldObj.(*corev1.Pod), newObj.(*corev1.Pod)
	if old.ResourceVersion == cur.ResourceVersion {
		return
	}
	if cur.DeletionTimestamp != nil {
		c.deletePod(cur)
		return
	}
	if o, n := metav1.GetControllerOf(old), metav1.GetControllerOf(cur); o != nil && (n == nil || n.UID != o.UID) {
		if key := c.ownerKey(old); key != "" {
			c.queue.Add(key)
		}
	}
	if metav1.GetControllerOf(cur) == nil {
		c.enqueueMatching(cur)
		return
	}
	key := c.ownerKey(cur)
	if key == "" {
		return
	}
	c.queue.Add(key)
	if !podutil.IsReady(old) && podutil.IsReady(cur) {
		if ds, err := c.sets.DaemonSets(cur.Namespace).Get(metav1.GetControllerOf(cur).Name); err == nil && ds.Spec.MinReadySeconds > 0 {
			c.queue.AddAfter(key, time.Duration(ds.Spec.MinReadySeconds)*time.Second+time.Second)
		}
	}
}

func (c *Controller) deletePod(obj any) {
	o := metaOf(obj)
	if o == nil {
		return
	}
	if key := c.ownerKey(o); key != "" {
		c.exp.deletionObserved(key, o.GetNamespace()+"/"+o.GetName())
		c.queue.Add(key)
	}
}

// Reconcile brings DaemonSet key one step closer to one updated, available
// pod per eligible node and writes its status.
func (c *Controller) Reconcile(ctx context.Context, key string) (controllers.Result, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return controllers.Result{}, nil
	}
	ds, err := c.sets.DaemonSets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.exp.forget(key)
		return controllers.Result{}, nil
	}
	if err != nil {
		return controllers.Result{}, err
	}
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil || sel.Empty() {
		return controllers.Result{}, nil
	}
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return controllers.Result{}, err
	}
	// Its own pods and the orphans it may adopt, from the controller
	// index: never a walk over every pod of the namespace.
	candidates, err := podutil.OwnAndOrphans(c.podInf.GetIndexer(), ns, ds.UID)
	if err != nil {
		return controllers.Result{}, err
	}
	pods, err := c.claimPods(ctx, ds, sel, candidates)
	if err != nil {
		return controllers.Result{}, err
	}
	revList, err := c.revs.ControllerRevisions(ns).List(labels.Everything())
	if err != nil {
		return controllers.Result{}, err
	}
	revs := history.Owned(revList, ds.UID)
	history.Sort(revs)
	var collisions int32
	if ds.Status.CollisionCount != nil {
		collisions = *ds.Status.CollisionCount
	}
	data, err := history.TemplatePatch(&ds.Spec.Template)
	if err != nil {
		return controllers.Result{}, err
	}
	cur, err := c.history.Ensure(ctx, ds, GVK, ds.Spec.Template.Labels, data, revs, &collisions)
	if err != nil {
		return controllers.Result{}, err
	}
	hash := cur.Labels[history.HashLabel]

	byNode := map[string][]*corev1.Pod{}
	for _, p := range pods {
		if p.DeletionTimestamp != nil && podutil.IsTerminated(p) {
			continue
		}
		if n := TargetNode(p); n != "" {
			byNode[n] = append(byNode[n], p)
		}
	}
	now := c.now()
	var syncErr error
	if ds.DeletionTimestamp == nil && c.exp.satisfied(key) {
		plan := Manage(ds, nodes, byNode, hash)
		if len(plan.CreateOn) == 0 && len(plan.Delete) == 0 && ds.Spec.UpdateStrategy.Type == appsv1.RollingUpdateDaemonSetStrategyType {
			plan = RollingUpdate(ds, nodes, byNode, hash, now)
		}
		syncErr = c.execute(ctx, key, ds, plan, hash)
	}

	st := ComputeStatus(ds, nodes, byNode, hash, collisions, now)
	if !statusEqual(ds.Status, st) {
		cp := ds.DeepCopy()
		cp.Status = st
		if _, err := c.client.AppsV1().DaemonSets(ns).UpdateStatus(ctx, cp, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return controllers.Result{}, errors.Join(syncErr, fmt.Errorf("update daemonset status: %w", err))
		}
	}
	if syncErr != nil {
		return controllers.Result{}, syncErr
	}
	if err := c.trimHistory(ctx, ds, revs, pods, cur); err != nil {
		return controllers.Result{}, err
	}
	if ds.Spec.MinReadySeconds > 0 && st.NumberReady != st.NumberAvailable {
		return controllers.Result{RequeueAfter: time.Duration(ds.Spec.MinReadySeconds) * time.Second}, nil
	}
	return controllers.Result{}, nil
}

// execute carries out plan under expectations, so a stale cache does not
// repeat it.
func (c *Controller) execute(ctx context.Context, key string, ds *appsv1.DaemonSet, plan Plan, hash string) error {
	creates := plan.CreateOn
	if len(creates) > burstReplicas {
		creates = creates[:burstReplicas]
	}
	dels := make([]string, 0, len(plan.Delete))
	for _, p := range plan.Delete {
		dels = append(dels, p.Namespace+"/"+p.Name)
	}
	if len(creates) == 0 && len(dels) == 0 {
		return nil
	}
	c.exp.expect(key, len(creates), dels)
	for _, p := range plan.FailedPods {
		c.event(ds, corev1.EventTypeWarning, FailedDaemonPod, "Found failed daemon pod %s/%s on node %s, will try to kill it", p.Namespace, p.Name, p.Spec.NodeName)
	}
	var errs []error
	var mu sync.Mutex
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	var next atomic.Int64
	_, err := slowStartBatch(len(creates), func() error {
		node := creates[next.Add(1)-1]
		p := NewPod(ds, node, hash)
		got, err := c.client.CoreV1().Pods(ds.Namespace).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			c.exp.creationObserved(key)
			if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
				return nil
			}
			c.event(ds, corev1.EventTypeWarning, FailedCreate, "Error creating: %v", err)
			return fmt.Errorf("create daemon pod for node %s: %w", node, err)
		}
		c.event(ds, corev1.EventTypeNormal, SuccessfulCreate, "Created pod: %v", got.Name)
		return nil
	})
	for range len(creates) - int(next.Load()) {
		c.exp.creationObserved(key) // never attempted
	}
	if err != nil {
		fail(err)
	}
	var wg sync.WaitGroup
	for i, p := range plan.Delete {
		wg.Add(1)
		go func() {
			defer wg.Done()
			uid := p.UID
			err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
			switch {
			case err == nil:
				c.event(ds, corev1.EventTypeNormal, SuccessfulDelete, "Deleted pod: %v", p.Name)
			case apierrors.IsNotFound(err), apierrors.IsConflict(err):
				c.exp.deletionObserved(key, dels[i])
			default:
				c.exp.deletionObserved(key, dels[i])
				c.event(ds, corev1.EventTypeWarning, FailedDelete, "Error deleting: %v", err)
				fail(fmt.Errorf("delete daemon pod %s: %w", p.Name, err))
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// slowStartBatch calls fn count times in batches of 1, 2, 4, ..., stopping
// after a batch with an error; it returns how many calls succeeded and the
// first error.
func slowStartBatch(count int, fn func() error) (int, error) {
	ok := 0
	for batch := min(count, 1); batch > 0; batch = min(2*batch, count-ok) {
		errCh := make(chan error, batch)
		var wg sync.WaitGroup
		for range batch {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := fn(); err != nil {
					errCh <- err
				}
			}()
		}
		wg.Wait()
		close(errCh)
		ok += batch - len(errCh)
		if len(errCh) > 0 {
			return ok, <-errCh
		}
	}
	return ok, nil
}

// trimHistory deletes revisions beyond revisionHistoryLimit that no pod
// uses, never the current one.
func (c *Controller) trimHistory(ctx context.Context, ds *appsv1.DaemonSet, revs []*appsv1.ControllerRevision, pods []*corev1.Pod, cur *appsv1.ControllerRevision) error {
	hashes := map[string]bool{}
	for _, p := range pods {
		hashes[p.Labels[history.HashLabel]] = true
	}
	live := map[string]bool{cur.Name: true}
	for _, r := range revs {
		if hashes[r.Labels[history.HashLabel]] {
			live[r.Name] = true
		}
	}
	limit := int32(10)
	if ds.Spec.RevisionHistoryLimit != nil {
		limit = *ds.Spec.RevisionHistoryLimit
	}
	return c.history.Trim(ctx, history.ToTrim(revs, live, limit))
}

// claimPods returns ds's pods after adopting matching orphans and
// releasing owned pods that stopped matching.
func (c *Controller) claimPods(ctx context.Context, ds *appsv1.DaemonSet, sel labels.Selector, candidates []*corev1.Pod) ([]*corev1.Pod, error) {
	cl := podutil.Claimer{
		Client: c.client, Owner: ds, GVK: GVK, Selector: sel,
		Fresh: func(ctx context.Context) (metav1.Object, error) {
			return c.client.AppsV1().DaemonSets(ds.Namespace).Get(ctx, ds.Name, metav1.GetOptions{})
		},
	}
	return cl.Claim(ctx, candidates)
}

func (c *Controller) event(ds *appsv1.DaemonSet, typ, reason, format string, args ...any) {
	if c.rec == nil {
		return
	}
	ref := &corev1.ObjectReference{
		Kind: GVK.Kind, APIVersion: GVK.GroupVersion().String(),
		Namespace: ds.Namespace, Name: ds.Name, UID: ds.UID, ResourceVersion: ds.ResourceVersion,
	}
	c.rec.Eventf(ref, typ, reason, format, args...)
}
