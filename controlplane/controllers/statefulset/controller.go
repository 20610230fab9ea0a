// Package statefulset is the StatefulSet controller: pods with stable
// names <set>-<ordinal> created and deleted in order (OrderedReady) or all
// at once (Parallel), PersistentVolumeClaims from volumeClaimTemplates made
// before their pod, RollingUpdate with partition and OnDelete updates,
// ControllerRevisions as history, and status. See README.md.
package statefulset

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
const Name = "statefulset-controller"

// Event reasons, as upstream.
const (
	SuccessfulCreate = "SuccessfulCreate"
	FailedCreate     = "FailedCreate"
	SuccessfulDelete = "SuccessfulDelete"
	FailedDelete     = "FailedDelete"
	SuccessfulUpdate = "SuccessfulUpdate"
	FailedUpdate     = "FailedUpdate"
	RecreatingFailed = "RecreatingFailedPod"
)

// Config is what the controller needs.
type Config struct {
	Client    kubernetes.Interface
	Informers informers.SharedInformerFactory
	Recorder  record.EventRecorder
	Logger    *slog.Logger
}

// Controller reconciles StatefulSets.
type Controller struct {
	client  kubernetes.Interface
	sets    appslisters.StatefulSetLister
	podInf  cache.SharedIndexInformer
	revs    appslisters.ControllerRevisionLister
	claims  corelisters.PersistentVolumeClaimLister
	synced  []cache.InformerSynced
	rec     record.EventRecorder
	log     *slog.Logger
	queue   workqueue.TypedRateLimitingInterface[string]
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
	sets, pods, revs, pvcs := f.Apps().V1().StatefulSets(), f.Core().V1().Pods(), f.Apps().V1().ControllerRevisions(), f.Core().V1().PersistentVolumeClaims()
	c := &Controller{
		client: cfg.Client, sets: sets.Lister(), podInf: pods.Informer(), revs: revs.Lister(), claims: pvcs.Lister(),
		synced: []cache.InformerSynced{sets.Informer().HasSynced, pods.Informer().HasSynced, revs.Informer().HasSynced, pvcs.Informer().HasSynced},
		rec:    cfg.Recorder, log: cfg.Logger.With("component", Name),
		queue: controllers.NewQueue("statefulset"), history: history.Client{Client: cfg.Client}, now: time.Now,
	}
	if err := podutil.AddControllerIndex(c.podInf); err != nil {
		return nil, err
	}
	if _, err := sets.Informer().AddEventHandler(controllers.Enqueue(c.queue)); err != nil {
		return nil, err
	}
	if _, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.podChanged,
		UpdateFunc: c.podUpdated,
		DeleteFunc: c.podChanged,
	}); err != nil {
		return nil, err
	}
	if _, err := revs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.ownerChanged,
		UpdateFunc: func(_, obj any) { c.ownerChanged(obj) },
		DeleteFunc: c.ownerChanged,
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

func metaOf(obj any) metav1.Object {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	m, _ := obj.(metav1.Object)
	return m
}

// ownerKey is the key of the StatefulSet controlling o, or "".
func (c *Controller) ownerKey(o metav1.Object) string {
	ref := metav1.GetControllerOf(o)
	if ref == nil || ref.Kind != GVK.Kind || ref.APIVersion != GVK.GroupVersion().String() {
		return ""
	}
	set, err := c.sets.StatefulSets(o.GetNamespace()).Get(ref.Name)
	if err != nil || set.UID != ref.UID {
		return ""
	}
	return o.GetNamespace() + "/" + set.Name
}

func (c *Controller) ownerChanged(obj any) {
	if o := metaOf(obj); o != nil {
		if key := c.ownerKey(o); key != "" {
			c.queue.Add(key)
		}
	}
}

// podChanged queues the pod's owner, or for an orphan every set whose
// selector matches it (a candidate for adoption).
func (c *Controller) podChanged(obj any) {
	o := metaOf(obj)
	if o == nil {
		return
	}
	if metav1.GetControllerOf(o) != nil {
		c.ownerChanged(o)
		return
	}
	sets, err := c.sets.StatefulSets(o.GetNamespace()).List(labels.Everything())
	if err != nil {
		return
	}
	for _, s := range sets {
		if sel, err := metav1.LabelSelectorAsSelector(s.Spec.Selector); err == nil && !sel.Empty() && sel.Matches(labels.Set(o.GetLabels())) {
			c.queue.Add(s.Namespace + "/" + s.Name)
		}
	}
}

func (c *Controller) podUpdated(oldObj, newObj any) {
	old, cur := oldObj.(*corev1.Pod), newObj.(*corev1.Pod)
	if old.ResourceVersion == cur.ResourceVersion {
		return
	}
	if o, n := metav1.GetControllerOf(old), metav1.GetControllerOf(cur); o != nil && (n == nil || n.UID != o.UID) {
		c.ownerChanged(old)
	}
	c.podChanged(cur)
}

// Reconcile brings StatefulSet key one step closer to its spec and writes
// its status.
func (c *Controller) Reconcile(ctx context.Context, key string) (controllers.Result, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return controllers.Result{}, nil
	}
	set, err := c.sets.StatefulSets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return controllers.Result{}, nil
	}
	if err != nil {
		return controllers.Result{}, err
	}
	sel, err := metav1.LabelSelectorAsSelector(set.Spec.Selector)
	if err != nil || sel.Empty() {
		return controllers.Result{}, nil // validation rejects these; nothing to do
	}
	// Its own pods and the orphans it may adopt, from the controller
	// index: never a walk over every pod of the namespace.
	candidates, err := podutil.OwnAndOrphans(c.podInf.GetIndexer(), ns, set.UID)
	if err != nil {
		return controllers.Result{}, err
	}
	pods, err := c.claimPods(ctx, set, sel, candidates)
	if err != nil {
		return controllers.Result{}, err
	}
	revList, err := c.revs.ControllerRevisions(ns).List(labels.Everything())
	if err != nil {
		return controllers.Result{}, err
	}
	revs := history.Owned(revList, set.UID)
	history.Sort(revs)
	var collisions int32
	if set.Status.CollisionCount != nil {
		collisions = *set.Status.CollisionCount
	}
	data, err := history.TemplatePatch(&set.Spec.Template)
	if err != nil {
		return controllers.Result{}, err
	}
	update, err := c.history.Ensure(ctx, set, GVK, set.Spec.Template.Labels, data, revs, &collisions)
	if err != nil {
		return controllers.Result{}, err
	}
	current := update
	for _, r := range revs {
		if r.Name == set.Status.CurrentRevision {
			current = r
		}
	}
	currentTmpl := &set.Spec.Template
	if current != update {
		if currentTmpl, err = history.Template(current.Data.Raw); err != nil {
			return controllers.Result{}, fmt.Errorf("revision %s: %w", current.Name, err)
		}
	}
	rv := Revisions{Current: current.Name, Update: update.Name, CurrentTmpl: currentTmpl, UpdateTmpl: &set.Spec.Template}
	requeue, syncErr := syncPods(ctx, apiControl{c}, set, rv, pods, c.now())

	st := ComputeStatus(set, pods, current.Name, update.Name, collisions, c.now())
	if !statusEqual(set.Status, st) {
		cp := set.DeepCopy()
		cp.Status = st
		if _, err := c.client.AppsV1().StatefulSets(ns).UpdateStatus(ctx, cp, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return controllers.Result{}, errors.Join(syncErr, fmt.Errorf("update statefulset status: %w", err))
		}
	}
	if syncErr != nil {
		return controllers.Result{}, syncErr
	}
	if err := c.trimHistory(ctx, set, revs, pods, st); err != nil {
		return controllers.Result{}, err
	}
	if set.Spec.MinReadySeconds > 0 && st.ReadyReplicas != st.AvailableReplicas && requeue == 0 {
		requeue = time.Duration(set.Spec.MinReadySeconds) * time.Second
	}
	return controllers.Result{RequeueAfter: requeue}, nil
}

// trimHistory deletes revisions beyond revisionHistoryLimit that no pod and
// neither status revision use.
func (c *Controller) trimHistory(ctx context.Context, set *appsv1.StatefulSet, revs []*appsv1.ControllerRevision, pods []*corev1.Pod, st appsv1.StatefulSetStatus) error {
	live := map[string]bool{st.CurrentRevision: true, st.UpdateRevision: true}
	for _, p := range pods {
		live[revisionOf(p)] = true
	}
	limit := int32(10)
	if set.Spec.RevisionHistoryLimit != nil {
		limit = *set.Spec.RevisionHistoryLimit
	}
	return c.history.Trim(ctx, history.ToTrim(revs, live, limit))
}

// claimPods returns the pods set owns after adopting matching orphans that
// are named as its members and releasing owned pods that stopped matching.
func (c *Controller) claimPods(ctx context.Context, set *appsv1.StatefulSet, sel labels.Selector, candidates []*corev1.Pod) ([]*corev1.Pod, error) {
	cl := podutil.Claimer{
		Client: c.client, Owner: set, GVK: GVK, Selector: sel,
		Fresh: func(ctx context.Context) (metav1.Object, error) {
			return c.client.AppsV1().StatefulSets(set.Namespace).Get(ctx, set.Name, metav1.GetOptions{})
		},
		Adoptable: func(p *corev1.Pod) bool { _, member := Ordinal(set.Name, p.Name); return member },
	}
	return cl.Claim(ctx, candidates)
}

func (c *Controller) event(set *appsv1.StatefulSet, typ, reason, format string, args ...any) {
	if c.rec == nil {
		return
	}
	ref := &corev1.ObjectReference{
		Kind: GVK.Kind, APIVersion: GVK.GroupVersion().String(),
		Namespace: set.Namespace, Name: set.Name, UID: set.UID, ResourceVersion: set.ResourceVersion,
	}
	c.rec.Eventf(ref, typ, reason, format, args...)
}

// apiControl is the podControl that writes through the API server and
// records upstream's events.
type apiControl struct{ c *Controller }

func (a apiControl) ensureClaims(ctx context.Context, set *appsv1.StatefulSet, p *corev1.Pod) error {
	ord, _ := Ordinal(set.Name, p.Name)
	var errs []error
	for _, claim := range Claims(set, ord) {
		existing, err := a.c.claims.PersistentVolumeClaims(set.Namespace).Get(claim.Name)
		if err == nil {
			if existing.DeletionTimestamp != nil {
				errs = append(errs, fmt.Errorf("pvc %s is being deleted", claim.Name))
			}
			continue
		}
		_, err = a.c.client.CoreV1().PersistentVolumeClaims(set.Namespace).Create(ctx, claim, metav1.CreateOptions{})
		switch {
		case err == nil:
			a.c.event(set, corev1.EventTypeNormal, SuccessfulCreate, "create Claim %s Pod %s in StatefulSet %s success", claim.Name, p.Name, set.Name)
		case apierrors.IsAlreadyExists(err):
		default:
			a.c.event(set, corev1.EventTypeWarning, FailedCreate, "create Claim %s for Pod %s in StatefulSet %s failed error: %s", claim.Name, p.Name, set.Name, err)
			errs = append(errs, fmt.Errorf("create pvc %s: %w", claim.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (a apiControl) create(ctx context.Context, set *appsv1.StatefulSet, p *corev1.Pod) error {
	if err := a.ensureClaims(ctx, set, p); err != nil {
		return err
	}
	_, err := a.c.client.CoreV1().Pods(set.Namespace).Create(ctx, p, metav1.CreateOptions{})
	switch {
	case err == nil:
		a.c.event(set, corev1.EventTypeNormal, SuccessfulCreate, "create Pod %s in StatefulSet %s successful", p.Name, set.Name)
		return nil
	case apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
		return nil
	case apierrors.IsAlreadyExists(err):
		// Ours, and the cache is behind: the next sync sees it. Anything
		// else holds the member's name: as upstream, the error requeues
		// the set with backoff until the name is free (the holder's
		// deletion requeues only the holder's own controller).
		live, gerr := a.c.client.CoreV1().Pods(set.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if gerr == nil && metav1.IsControlledBy(live, set) {
			return nil
		}
		return fmt.Errorf("create pod %s: its name is taken by a pod this StatefulSet does not control: %w", p.Name, err)
	default:
		a.c.event(set, corev1.EventTypeWarning, FailedCreate, "create Pod %s in StatefulSet %s failed error: %s", p.Name, set.Name, err)
		return fmt.Errorf("create pod %s: %w", p.Name, err)
	}
}

func (a apiControl) delete(ctx context.Context, set *appsv1.StatefulSet, p *corev1.Pod) error {
	if podutil.IsTerminated(p) {
		a.c.event(set, corev1.EventTypeWarning, RecreatingFailed, "StatefulSet %s/%s is recreating failed Pod %s", set.Namespace, set.Name, p.Name)
	}
	uid := p.UID
	err := a.c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	switch {
	case err == nil:
		a.c.event(set, corev1.EventTypeNormal, SuccessfulDelete, "delete Pod %s in StatefulSet %s successful", p.Name, set.Name)
		return nil
	case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		return nil // already gone (or replaced): the cache is behind
	default:
		a.c.event(set, corev1.EventTypeWarning, FailedDelete, "delete Pod %s in StatefulSet %s failed error: %s", p.Name, set.Name, err)
		return fmt.Errorf("delete pod %s: %w", p.Name, err)
	}
}

func (a apiControl) fixIdentity(ctx context.Context, set *appsv1.StatefulSet, p *corev1.Pod) error {
	ord, _ := Ordinal(set.Name, p.Name)
	cp := p.DeepCopy()
	setIdentity(set, cp, ord)
	_, err := a.c.client.CoreV1().Pods(p.Namespace).Update(ctx, cp, metav1.UpdateOptions{})
	switch {
	case err == nil:
		a.c.event(set, corev1.EventTypeNormal, SuccessfulUpdate, "update Pod %s in StatefulSet %s successful", p.Name, set.Name)
		return nil
	case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		return nil
	default:
		a.c.event(set, corev1.EventTypeWarning, FailedUpdate, "update Pod %s in StatefulSet %s failed error: %s", p.Name, set.Name, err)
		return fmt.Errorf("update pod %s: %w", p.Name, err)
	}
}
