package persistentvolume

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/skiffhq/skiff/controlplane/controllers"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Names of the protection controllers, as upstream.
const (
	PVCProtectionName = "persistentvolumeclaim-protection-controller"
	PVProtectionName  = "persistentvolume-protection-controller"
)

// ProtectionConfig is what the protection controllers need.
type ProtectionConfig struct {
	Client    kubernetes.Interface
	Informers informers.SharedInformerFactory
	Logger    *slog.Logger
}

// PVCProtection adds kubernetes.io/pvc-protection to claims and removes
// it from a deleted claim once no scheduled, unfinished pod uses it.
type PVCProtection struct {
	client kubernetes.Interface
	claims corelisters.PersistentVolumeClaimLister
	pods   corelisters.PodLister
	synced []cache.InformerSynced
	log    *slog.Logger
	queue  workqueue.TypedRateLimitingInterface[string]
}

var _ controllers.Controller = (*PVCProtection)(nil)

// NewPVCProtection returns the controller with its handlers registered.
func NewPVCProtection(cfg ProtectionConfig) (*PVCProtection, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	pvcs, pods := cfg.Informers.Core().V1().PersistentVolumeClaims(), cfg.Informers.Core().V1().Pods()
	c := &PVCProtection{
		client: cfg.Client, claims: pvcs.Lister(), pods: pods.Lister(),
		synced: []cache.InformerSynced{pvcs.Informer().HasSynced, pods.Informer().HasSynced},
		log:    cfg.Logger.With("component", PVCProtectionName), queue: controllers.NewQueue("pvcprotection"),
	}
	add := func(obj any) {
		if cl, ok := obj.(*corev1.PersistentVolumeClaim); ok && needsPVCWork(cl) {
			c.queue.Add(cl.Namespace + "/" + cl.Name)
		}
	}
	if _, err := pvcs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: add, UpdateFunc: func(_, o any) { add(o) }}); err != nil {
		return nil, err
	}
	// A pod going away (or finishing) may free the claims it used.
	onPod := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			return
		}
		for _, name := range podClaims(pod) {
			c.queue.Add(pod.Namespace + "/" + name)
		}
	}
	if _, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onPod, UpdateFunc: func(_, o any) { onPod(o) }, DeleteFunc: onPod,
	}); err != nil {
		return nil, err
	}
	return c, nil
}

func needsPVCWork(c *corev1.PersistentVolumeClaim) bool {
	has := slices.Contains(c.Finalizers, PVCProtectionFinalizer)
	return c.DeletionTimestamp == nil && !has || c.DeletionTimestamp != nil && has
}

// podClaims lists the claims pod uses (ephemeral volumes' claims included).
func podClaims(pod *corev1.Pod) []string {
	var out []string
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.PersistentVolumeClaim != nil:
			out = append(out, v.PersistentVolumeClaim.ClaimName)
		case v.Ephemeral != nil:
			out = append(out, pod.Name+"-"+v.Name)
		}
	}
	return out
}

// podUsesClaim is upstream's test: only scheduled pods that have not
// finished count (the node agent refuses to start a pod whose claim is
// being deleted).
func podUsesClaim(pod *corev1.Pod, claim string) bool {
	if pod.Spec.NodeName == "" || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return false
	}
	return slices.Contains(podClaims(pod), claim)
}

// Name implements controllers.Controller.
func (c *PVCProtection) Name() string { return PVCProtectionName }

// Run implements controllers.Controller.
func (c *PVCProtection) Run(ctx context.Context, workers int) error {
	if !controllers.WaitForSync(ctx, c.synced...) {
		return ctx.Err()
	}
	controllers.RunWorkers(ctx, c.queue, workers, c.log, c.Reconcile)
	return nil
}

// Reconcile adds or removes the finalizer of claim key.
func (c *PVCProtection) Reconcile(ctx context.Context, key string) (controllers.Result, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return controllers.Result{}, nil
	}
	cl, err := c.claims.PersistentVolumeClaims(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return controllers.Result{}, nil
	}
	if err != nil {
		return controllers.Result{}, err
	}
	if !needsPVCWork(cl) {
		return controllers.Result{}, nil
	}
	cl = cl.DeepCopy()
	if cl.DeletionTimestamp == nil {
		cl.Finalizers = append(cl.Finalizers, PVCProtectionFinalizer)
		if _, err := c.client.CoreV1().PersistentVolumeClaims(ns).Update(ctx, cl, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return controllers.Result{}, fmt.Errorf("add finalizer to claim %s: %w", key, err)
		}
		return controllers.Result{}, nil
	}
	// Being deleted: the cache first, then the API server (a pod created
	// a moment ago may not be cached yet), as upstream.
	pods, err := c.pods.Pods(ns).List(labels.Everything())
	if err != nil {
		return controllers.Result{}, err
	}
	for _, p := range pods {
		if podUsesClaim(p, name) {
			return controllers.Result{}, nil // the pod's update or deletion requeues
		}
	}
	live, err := c.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return controllers.Result{}, fmt.Errorf("list pods using claim %s: %w", key, err)
	}
	for i := range live.Items {
		if podUsesClaim(&live.Items[i], name) {
			return controllers.Result{}, nil
		}
	}
	cl.Finalizers = slices.DeleteFunc(cl.Finalizers, func(f string) bool { return f == PVCProtectionFinalizer })
	if _, err := c.client.CoreV1().PersistentVolumeClaims(ns).Update(ctx, cl, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return controllers.Result{}, fmt.Errorf("remove finalizer from claim %s: %w", key, err)
	}
	c.log.Info("claim no longer in use; finalizer removed", "claim", key)
	return controllers.Result{}, nil
}

// PVProtection adds kubernetes.io/pv-protection to volumes and removes it
// from a deleted volume once it is no longer Bound.
type PVProtection struct {
	client  kubernetes.Interface
	volumes corelisters.PersistentVolumeLister
	synced  cache.InformerSynced
	log     *slog.Logger
	queue   workqueue.TypedRateLimitingInterface[string]
}

var _ controllers.Controller = (*PVProtection)(nil)

// NewPVProtection returns the controller with its handler registered.
func NewPVProtection(cfg ProtectionConfig) (*PVProtection, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	pvs := cfg.Informers.Core().V1().PersistentVolumes()
	c := &PVProtection{
		client: cfg.Client, volumes: pvs.Lister(), synced: pvs.Informer().HasSynced,
		log: cfg.Logger.With("component", PVProtectionName), queue: controllers.NewQueue("pvprotection"),
	}
	add := func(obj any) {
		if v, ok := obj.(*corev1.PersistentVolume); ok && needsPVWork(v) {
			c.queue.Add(v.Name)
		}
	}
	if _, err := pvs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: add, UpdateFunc: func(_, o any) { add(o) }}); err != nil {
		return nil, err
	}
	return c, nil
}

func needsPVWork(v *corev1.PersistentVolume) bool {
	has := slices.Contains(v.Finalizers, PVProtectionFinalizer)
	return v.DeletionTimestamp == nil && !has || v.DeletionTimestamp != nil && has && v.Status.Phase != corev1.VolumeBound
}

// Name implements controllers.Controller.
func (c *PVProtection) Name() string { return PVProtectionName }

// Run implements controllers.Controller.
func (c *PVProtection) Run(ctx context.Context, workers int) error {
	if !controllers.WaitForSync(ctx, c.synced) {
		return ctx.Err()
	}
	controllers.RunWorkers(ctx, c.queue, workers, c.log, c.Reconcile)
	return nil
}

// Reconcile adds or removes the finalizer of volume name.
func (c *PVProtection) Reconcile(ctx context.Context, name string) (controllers.Result, error) {
	v, err := c.volumes.Get(name)
	if apierrors.IsNotFound(err) {
		return controllers.Result{}, nil
	}
	if err != nil {
		return controllers.Result{}, err
	}
	if !needsPVWork(v) {
		return controllers.Result{}, nil
	}
	v = v.DeepCopy()
	if v.DeletionTimestamp == nil {
		v.Finalizers = append(v.Finalizers, PVProtectionFinalizer)
	} else {
		v.Finalizers = slices.DeleteFunc(v.Finalizers, func(f string) bool { return f == PVProtectionFinalizer })
	}
	if _, err := c.client.CoreV1().PersistentVolumes().Update(ctx, v, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return controllers.Result{}, fmt.Errorf("update finalizers of volume %s: %w", name, err)
	}
	return controllers.Result{}, nil
}
