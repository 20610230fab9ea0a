package nodelifecycle

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
)

// TaintEvictionName is upstream's name of the taint manager.
const TaintEvictionName = "taint-eviction-controller"

// TaintEvictionConfig is what the taint manager needs.
type TaintEvictionConfig struct {
	Client    kubernetes.Interface
	Informers informers.SharedInformerFactory
	Recorder  record.EventRecorder
	Logger    *slog.Logger
}

// TaintEviction deletes pods from nodes with NoExecute taints they do not
// tolerate: at once without a matching toleration, after the shortest
// tolerationSeconds of the matching ones otherwise, never when those have
// no limit. The countdown starts when the controller first sees the pod
// on the tainted node, as upstream's.
type TaintEviction struct {
	cfg    TaintEvictionConfig
	log    *slog.Logger
	pods   corelisters.PodLister
	podIdx cache.Indexer
	nodes  corelisters.NodeLister
	synced []cache.InformerSynced
	queue  workqueue.TypedRateLimitingInterface[string]
	now    func() time.Time

	mu    sync.Mutex
	since map[string]scheduled // pod key -> when its countdown started
}

type scheduled struct {
	uid   types.UID
	start time.Time
}

var _ controllers.Controller = (*TaintEviction)(nil)

// NewTaintEviction returns the taint manager.
func NewTaintEviction(cfg TaintEvictionConfig) (*TaintEviction, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	pi, ni := cfg.Informers.Core().V1().Pods(), cfg.Informers.Core().V1().Nodes()
	if err := addPodNodeIndex(pi.Informer()); err != nil {
		return nil, fmt.Errorf("%s: pod index: %w", TaintEvictionName, err)
	}
	c := &TaintEviction{cfg: cfg, log: cfg.Logger.With("component", TaintEvictionName), pods: pi.Lister(), podIdx: pi.Informer().GetIndexer(),
		nodes: ni.Lister(), synced: []cache.InformerSynced{pi.Informer().HasSynced, ni.Informer().HasSynced},
		queue: controllers.NewQueue(TaintEvictionName), now: time.Now, since: map[string]scheduled{}}
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add(key)
		}
	}
	if _, err := pi.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
				enqueue(obj)
			}
		},
		UpdateFunc: func(old, cur any) {
			o, ok1 := old.(*corev1.Pod)
			p, ok2 := cur.(*corev1.Pod)
			if !ok1 || !ok2 || p.Spec.NodeName == "" {
				return
			}
			if o.Spec.NodeName != p.Spec.NodeName || !apiequality.Semantic.DeepEqual(o.Spec.Tolerations, p.Spec.Tolerations) {
				enqueue(cur)
			}
		},
		DeleteFunc: enqueue,
	}); err != nil {
		return nil, fmt.Errorf("%s: pod handler: %w", TaintEvictionName, err)
	}
	nodeChanged := func(old, cur *corev1.Node) {
		if old != nil && slices.EqualFunc(noExecuteTaints(old), noExecuteTaints(cur), func(a, b corev1.Taint) bool { return a.MatchTaint(&b) && a.Value == b.Value }) {
			return
		}
		if old == nil && len(noExecuteTaints(cur)) == 0 {
			return
		}
		for _, p := range podsOnNode(c.podIdx, cur.Name) {
			enqueue(p)
		}
	}
	if _, err := ni.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if n, ok := obj.(*corev1.Node); ok {
				nodeChanged(nil, n)
			}
		},
		UpdateFunc: func(old, cur any) {
			o, ok1 := old.(*corev1.Node)
			n, ok2 := cur.(*corev1.Node)
			if ok1 && ok2 {
				nodeChanged(o, n)
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("%s: node handler: %w", TaintEvictionName, err)
	}
	return c, nil
}

// Name implements controllers.Controller.
func (c *TaintEviction) Name() string { return TaintEvictionName }

// Run implements controllers.Controller.
func (c *TaintEviction) Run(ctx context.Context, workers int) error {
	if !controllers.WaitForSync(ctx, c.synced...) {
		c.queue.ShutDown()
		return ctx.Err()
	}
	controllers.RunWorkers(ctx, c.queue, workers, c.log, c.Reconcile)
	return nil
}

func (c *TaintEviction) cancel(key string) {
	c.mu.Lock()
	delete(c.since, key)
	c.mu.Unlock()
}

// Reconcile decides, for the pod named key, whether it must go now, later
// (a timed requeue) or not at all.
func (c *TaintEviction) Reconcile(ctx context.Context, key string) (controllers.Result, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return controllers.Result{}, nil
	}
	pod, err := c.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.cancel(key)
		return controllers.Result{}, nil
	}
	if err != nil {
		return controllers.Result{}, err
	}
	if pod.Spec.NodeName == "" || pod.DeletionTimestamp != nil {
		c.cancel(key)
		return controllers.Result{}, nil
	}
	node, err := c.nodes.Get(pod.Spec.NodeName)
	if err != nil {
		c.cancel(key)
		return controllers.Result{}, nil
	}
	taints := noExecuteTaints(node)
	if len(taints) == 0 {
		c.cancel(key)
		return controllers.Result{}, nil
	}
	all, used := matchingTolerations(taints, pod.Spec.Tolerations)
	if all {
		wait := minTolerationTime(used)
		if wait < 0 {
			c.cancel(key)
			return controllers.Result{}, nil
		}
		now := c.now()
		c.mu.Lock()
		s, ok := c.since[key]
		if !ok || s.uid != pod.UID {
			s = scheduled{uid: pod.UID, start: now}
			c.since[key] = s
		}
		c.mu.Unlock()
		if left := s.start.Add(wait).Sub(now); left > 0 {
			return controllers.Result{RequeueAfter: left}, nil
		}
	}
	if err := c.evict(ctx, pod); err != nil {
		return controllers.Result{}, err
	}
	c.cancel(key)
	return controllers.Result{}, nil
}

// evict marks the pod with the DisruptionTarget condition and deletes it
// (with its own grace period), as upstream's taint manager.
func (c *TaintEviction) evict(ctx context.Context, pod *corev1.Pod) error {
	if c.cfg.Recorder != nil {
		c.cfg.Recorder.Eventf(pod, corev1.EventTypeNormal, "TaintManagerEviction", "Marking for deletion Pod %s/%s", pod.Namespace, pod.Name)
	}
	upd := pod.DeepCopy()
	cond := corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "DeletionByTaintManager",
		Message: "Taint manager: deleting due to NoExecute taint", LastTransitionTime: metav1.NewTime(c.now())}
	replaced := false
	for i := range upd.Status.Conditions {
		if upd.Status.Conditions[i].Type == corev1.DisruptionTarget {
			upd.Status.Conditions[i], replaced = cond, true
		}
	}
	if !replaced {
		upd.Status.Conditions = append(upd.Status.Conditions, cond)
	}
	if _, err := c.cfg.Client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("mark pod %s/%s for eviction: %w", pod.Namespace, pod.Name, err)
	}
	err := c.cfg.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pod.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("evict pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	c.log.Info("evicted pod from tainted node", "pod", pod.Namespace+"/"+pod.Name, "node", pod.Spec.NodeName)
	return nil
}
