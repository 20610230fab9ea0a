// Package replicaset is the ReplicaSet controller and, on the same code, the
// ReplicationController manager: each keeps spec.replicas active pods that
// match its selector, adopting and releasing pods through controller owner
// references, and reports status. See README.md.
package replicaset

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/internal/podutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
)

// Names of the two controllers (upstream's).
const (
	ReplicaSetName            = "replicaset-controller"
	ReplicationControllerName = "replicationcontroller-controller"
)

// BurstReplicas caps the creates or deletes of one sync (upstream's 500).
const BurstReplicas = 500

// Event reasons, as upstream.
const (
	SuccessfulCreate = "SuccessfulCreate"
	FailedCreate     = "FailedCreate"
	SuccessfulDelete = "SuccessfulDelete"
	FailedDelete     = "FailedDelete"
)

var everything = labels.Everything()

// Config is what the controller needs.
type Config struct {
	Client    kubernetes.Interface
	Informers informers.SharedInformerFactory
	Recorder  record.EventRecorder
	Logger    *slog.Logger
}

// Controller keeps the replicas of ReplicaSets (or ReplicationControllers).
type Controller struct {
	name   string
	client kubernetes.Interface
	kind   kind
	pods   corelisters.PodLister
	podInf cache.SharedIndexInformer
	rec    record.EventRecorder
	log    *slog.Logger
	queue  workqueue.TypedRateLimitingInterface[string]
	exp    *Expectations
	now    func() time.Time
}

var _ controllers.Controller = (*Controller)(nil)

// NewReplicaSet returns the ReplicaSet controller.
func NewReplicaSet(cfg Config) (*Controller, error) {
	return newController(cfg, ReplicaSetName, "replicaset", newReplicaSets(cfg.Client, cfg.Informers))
}

// NewReplicationController returns the ReplicationController manager.
func NewReplicationController(cfg Config) (*Controller, error) {
	return newController(cfg, ReplicationControllerName, "replicationmanager", newReplicationControllers(cfg.Client, cfg.Informers))
}

func newController(cfg Config, name, queue string, k kind) (*Controller, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	pods := cfg.Informers.Core().V1().Pods()
	c := &Controller{
		name: name, client: cfg.Client, kind: k, pods: pods.Lister(), podInf: pods.Informer(),
		rec: cfg.Recorder, log: cfg.Logger.With("component", name),
		queue: controllers.NewQueue(queue), exp: NewExpectations(), now: time.Now,
	}
	if err := podutil.AddControllerIndex(c.podInf); err != nil {
		return nil, err
	}
	enqueue := controllers.Enqueue(c.queue)
	h := enqueue
	h.DeleteFunc = func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.exp.Delete(key)
			c.queue.Add(key)
		}
	}
	if _, err := k.informer().AddEventHandler(h); err != nil {
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
func (c *Controller) Name() string { return c.name }

// Run implements controllers.Controller.
func (c *Controller) Run(ctx context.Context, workers int) error {
	if !controllers.WaitForSync(ctx, c.kind.informer().HasSynced, c.podInf.HasSynced) {
		return ctx.Err()
	}
	controllers.RunWorkers(ctx, c.queue, workers, c.log, c.Reconcile)
	return nil
}

// ownerKey resolves a pod's controller reference to the key of one of our
// objects, or "" when it points elsewhere.
func (c *Controller) ownerKey(ns string, ref *metav1.OwnerReference) string {
	gvk := c.kind.gvk()
	if ref == nil || ref.Kind != gvk.Kind || ref.APIVersion != gvk.GroupVersion().String() {
		return ""
	}
	rs, err := c.kind.get(ns, ref.Name)
	if err != nil || rs.UID != ref.UID {
		return ""
	}
	return ns + "/" + rs.Name
}

// enqueueMatching queues every object whose selector matches an orphan pod.
func (c *Controller) enqueueMatching(p *corev1.Pod) {
	all, err := c.kind.list(p.Namespace)
	if err != nil {
		return
	}
	for _, rs := range all {
		if selectorOf(rs).Matches(labels.Set(p.Labels)) {
			c.queue.Add(p.Namespace + "/" + rs.Name)
		}
	}
}

func (c *Controller) addPod(obj any) {
	p := obj.(*corev1.Pod)
	if p.DeletionTimestamp != nil {
		c.deletePod(p)
		return
	}
	if ref := metav1.GetControllerOf(p); ref != nil {
		if key := c.ownerKey(p.Namespace, ref); key != "" {
			c.exp.CreationObserved(key)
			c.queue.Add(key)
		}
		return
	}
	c.enqueueMatching(p)
}

func (c *Controller) updatePod(oldObj, newObj any) {
	old, cur := oldObj.(*corev1.Pod), newObj.(*corev1.Pod)
	if old.ResourceVersion == cur.ResourceVersion {
		return
	}
	labelsChanged := !labels.Equals(old.Labels, cur.Labels)
	if cur.DeletionTimestamp != nil {
		c.deletePod(cur)
		if labelsChanged {
			c.deletePod(old)
		}
		return
	}
	oldRef, curRef := metav1.GetControllerOf(old), metav1.GetControllerOf(cur)
	refChanged := !equalRefs(oldRef, curRef)
	if refChanged && oldRef != nil {
		if key := c.ownerKey(old.Namespace, oldRef); key != "" {
			c.queue.Add(key)
		}
	}
	if curRef != nil {
		key := c.ownerKey(cur.Namespace, curRef)
		if key == "" {
			return
		}
		c.queue.Add(key)
		if !podutil.IsReady(old) && podutil.IsReady(cur) {
			if rs, err := c.kind.get(cur.Namespace, curRef.Name); err == nil && rs.Spec.MinReadySeconds > 0 {
				c.queue.AddAfter(key, time.Duration(rs.Spec.MinReadySeconds)*time.Second+time.Second)
			}
		}
		return
	}
	if labelsChanged || refChanged {
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
	ref := metav1.GetControllerOf(p)
	if ref == nil {
		return
	}
	key := c.ownerKey(p.Namespace, ref)
	if key == "" {
		return
	}
	c.exp.DeletionObserved(key, p.Namespace+"/"+p.Name)
	c.queue.Add(key)
}

func equalRefs(a, b *metav1.OwnerReference) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.UID == b.UID
}

func selectorOf(rs *appsv1.ReplicaSet) labels.Selector {
	if rs.Spec.Selector == nil || (len(rs.Spec.Selector.MatchLabels) == 0 && len(rs.Spec.Selector.MatchExpressions) == 0) {
		return labels.Nothing()
	}
	s, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
	if err != nil {
		return labels.Nothing()
	}
	return s
}

// Reconcile brings ReplicaSet (or RC) key to spec.replicas pods and writes
// its status.
func (c *Controller) Reconcile(ctx context.Context, key string) (controllers.Result, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return controllers.Result{}, nil
	}
	rs, err := c.kind.get(ns, name)
	if apierrors.IsNotFound(err) {
		c.exp.Delete(key)
		return controllers.Result{}, nil
	}
	if err != nil {
		return controllers.Result{}, err
	}
	needsSync := c.exp.Satisfied(key)
	// Its own pods and the orphans it may adopt; pods of other controllers
	// are never claimed.
	candidates, err := podutil.OwnAndOrphans(c.podInf.GetIndexer(), ns, rs.UID)
	if err != nil {
		return controllers.Result{}, err
	}
	var active []*corev1.Pod
	for _, p := range candidates {
		if podutil.IsActive(p) {
			active = append(active, p)
		}
	}
	owned, err := c.claimPods(ctx, rs, active)
	if err != nil {
		return controllers.Result{}, err
	}
	var manageErr error
	if needsSync && rs.DeletionTimestamp == nil {
		manageErr = c.manageReplicas(ctx, key, rs, owned)
	}
	now := c.now()
	st := CalculateStatus(rs, owned, manageErr, now)
	if err := c.writeStatus(ctx, rs, st); err != nil {
		return controllers.Result{}, err
	}
	if manageErr != nil {
		return controllers.Result{}, manageErr
	}
	if rs.Spec.MinReadySeconds > 0 && st.ReadyReplicas != st.AvailableReplicas {
		return controllers.Result{RequeueAfter: time.Duration(rs.Spec.MinReadySeconds) * time.Second}, nil
	}
	return controllers.Result{}, nil
}

// claimPods adopts matching orphans and releases owned pods that stopped
// matching; it returns the pods rs owns afterwards.
func (c *Controller) claimPods(ctx context.Context, rs *appsv1.ReplicaSet, pods []*corev1.Pod) ([]*corev1.Pod, error) {
	cl := podutil.Claimer{
		Client: c.client, Owner: rs, GVK: c.kind.gvk(), Selector: selectorOf(rs),
		Fresh: func(ctx context.Context) (metav1.Object, error) { return c.kind.fresh(ctx, rs.Namespace, rs.Name) },
	}
	return cl.Claim(ctx, pods)
}

// ReplicaDiff is how many pods to create (>0) or delete (<0), capped at
// BurstReplicas.
func ReplicaDiff(want int32, have int) int {
	d := int(want) - have
	if d > BurstReplicas {
		return BurstReplicas
	}
	if d < -BurstReplicas {
		return -BurstReplicas
	}
	return d
}

func (c *Controller) manageReplicas(ctx context.Context, key string, rs *appsv1.ReplicaSet, owned []*corev1.Pod) error {
	want := int32(1)
	if rs.Spec.Replicas != nil {
		want = *rs.Spec.Replicas
	}
	diff := ReplicaDiff(want, len(owned))
	switch {
	case diff > 0:
		c.exp.ExpectCreations(key, diff)
		created, err := SlowStartBatch(diff, 1, func() error {
			return c.createPod(ctx, rs)
		})
		if skipped := diff - created; skipped > 0 {
			for range skipped {
				c.exp.CreationObserved(key)
			}
		}
		return err
	case diff < 0:
		victims := PodsToDelete(owned, c.relatedPods(rs), -diff, c.now())
		keys := make([]string, 0, len(victims))
		for _, p := range victims {
			keys = append(keys, p.Namespace+"/"+p.Name)
		}
		c.exp.ExpectDeletions(key, keys)
		var wg sync.WaitGroup
		errs := make([]error, len(victims))
		for i, p := range victims {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{})
				switch {
				case err == nil:
					c.event(rs, corev1.EventTypeNormal, SuccessfulDelete, "Deleted pod: %v", p.Name)
				case apierrors.IsNotFound(err):
					c.exp.DeletionObserved(key, keys[i])
				default:
					c.exp.DeletionObserved(key, keys[i])
					c.event(rs, corev1.EventTypeWarning, FailedDelete, "Error deleting: %v", err)
					errs[i] = err
				}
			}()
		}
		wg.Wait()
		return errors.Join(errs...)
	}
	return nil
}

// relatedPods are the active pods of rs and of its siblings (the other
// objects under the same controlling owner, such as a Deployment's RSes).
func (c *Controller) relatedPods(rs *appsv1.ReplicaSet) []*corev1.Pod {
	uids := map[types.UID]bool{rs.UID: true}
	if owner := metav1.GetControllerOf(rs); owner != nil {
		if sibs, err := c.kind.list(rs.Namespace); err == nil {
			for _, s := range sibs {
				if o := metav1.GetControllerOf(s); o != nil && o.UID == owner.UID {
					uids[s.UID] = true
				}
			}
		}
	}
	var out []*corev1.Pod
	for uid := range uids {
		pods, _ := podutil.ControlledPods(c.podInf.GetIndexer(), rs.Namespace, uid)
		for _, p := range pods {
			if podutil.IsActive(p) {
				out = append(out, p)
			}
		}
	}
	return out
}

// SlowStartBatch calls fn count times in batches of 1, 2, 4, ... (starting
// at initial), stopping after the first batch with an error. It returns how
// many calls succeeded.
func SlowStartBatch(count, initial int, fn func() error) (int, error) {
	remaining, ok := count, 0
	for batch := min(remaining, initial); batch > 0; batch = min(2*batch, remaining) {
		errs := make(chan error, batch)
		var wg sync.WaitGroup
		for range batch {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := fn(); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		ok += batch - len(errs)
		if len(errs) > 0 {
			return ok, <-errs
		}
		remaining -= batch
	}
	return ok, nil
}

func (c *Controller) createPod(ctx context.Context, rs *appsv1.ReplicaSet) error {
	p := PodFromTemplate(&rs.Spec.Template, rs, podutil.NewControllerRef(rs, c.kind.gvk()))
	created, err := c.client.CoreV1().Pods(rs.Namespace).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			return nil
		}
		c.event(rs, corev1.EventTypeWarning, FailedCreate, "Error creating: %v", err)
		return err
	}
	c.event(rs, corev1.EventTypeNormal, SuccessfulCreate, "Created pod: %v", created.Name)
	return nil
}

// PodFromTemplate is a new pod for owner from template, named
// <owner>-<random>.
func PodFromTemplate(t *corev1.PodTemplateSpec, owner metav1.Object, ref *metav1.OwnerReference) *corev1.Pod {
	prefix := owner.GetName() + "-"
	if len(prefix) > 58 {
		prefix = prefix[:58]
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: prefix,
			Namespace:    owner.GetNamespace(),
			Labels:       copyMap(t.Labels),
			Annotations:  copyMap(t.Annotations),
			Finalizers:   append([]string(nil), t.Finalizers...),
		},
		Spec: *t.Spec.DeepCopy(),
	}
	if ref != nil {
		p.OwnerReferences = []metav1.OwnerReference{*ref}
	}
	return p
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (c *Controller) event(obj *appsv1.ReplicaSet, typ, reason, format string, args ...any) {
	if c.rec == nil {
		return
	}
	ref := &corev1.ObjectReference{
		Kind: c.kind.gvk().Kind, APIVersion: c.kind.gvk().GroupVersion().String(),
		Namespace: obj.Namespace, Name: obj.Name, UID: obj.UID, ResourceVersion: obj.ResourceVersion,
	}
	c.rec.Eventf(ref, typ, reason, format, args...)
}

// CalculateStatus is rs's status given the pods it owns.
func CalculateStatus(rs *appsv1.ReplicaSet, owned []*corev1.Pod, manageErr error, now time.Time) appsv1.ReplicaSetStatus {
	st := appsv1.ReplicaSetStatus{Replicas: int32(len(owned)), ObservedGeneration: rs.Generation}
	tmpl := labels.Set(rs.Spec.Template.Labels).AsSelectorPreValidated()
	for _, p := range owned {
		if tmpl.Matches(labels.Set(p.Labels)) {
			st.FullyLabeledReplicas++
		}
		if podutil.IsReady(p) {
			st.ReadyReplicas++
			if podutil.IsAvailable(p, rs.Spec.MinReadySeconds, now) {
				st.AvailableReplicas++
			}
		}
	}
	var failure *appsv1.ReplicaSetCondition
	for i := range rs.Status.Conditions {
		c := rs.Status.Conditions[i]
		if c.Type == appsv1.ReplicaSetReplicaFailure {
			failure = &c
			continue
		}
		st.Conditions = append(st.Conditions, c)
	}
	switch {
	case manageErr != nil && failure == nil:
		reason := "FailedCreate"
		want := int32(1)
		if rs.Spec.Replicas != nil {
			want = *rs.Spec.Replicas
		}
		if int32(len(owned)) > want {
			reason = "FailedDelete"
		}
		st.Conditions = append(st.Conditions, appsv1.ReplicaSetCondition{
			Type: appsv1.ReplicaSetReplicaFailure, Status: corev1.ConditionTrue,
			LastTransitionTime: metav1.NewTime(now), Reason: reason, Message: manageErr.Error(),
		})
	case manageErr != nil:
		st.Conditions = append(st.Conditions, *failure)
	}
	sort.SliceStable(st.Conditions, func(i, j int) bool { return st.Conditions[i].Type < st.Conditions[j].Type })
	return st
}

func (c *Controller) writeStatus(ctx context.Context, rs *appsv1.ReplicaSet, st appsv1.ReplicaSetStatus) error {
	if statusEqual(rs.Status, st) {
		return nil
	}
	cp := rs.DeepCopy()
	cp.Status = st
	err := c.kind.updateStatus(ctx, cp)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("update %s status: %w", strings.ToLower(c.kind.gvk().Kind), err)
	}
	return nil
}

func statusEqual(a, b appsv1.ReplicaSetStatus) bool {
	if a.Replicas != b.Replicas || a.FullyLabeledReplicas != b.FullyLabeledReplicas || a.ReadyReplicas != b.ReadyReplicas ||
		a.AvailableReplicas != b.AvailableReplicas || a.ObservedGeneration != b.ObservedGeneration || len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Conditions {
		x, y := a.Conditions[i], b.Conditions[i]
		if x.Type != y.Type || x.Status != y.Status || x.Reason != y.Reason || x.Message != y.Message {
			return false
		}
	}
	return true
}
