package persistentvolume

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/persistentvolume/provisioner/localpath"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Storage capacity tracking, as upstream's (KEP 1472): a provisioner whose
// CSIDriver object says storageCapacity: true has its free space published
// as CSIStorageCapacity objects (per class, per node topology), and a
// claim may only be provisioned where one of them has room for its
// request. The scheduler's VolumeBinding Filter and the binder's
// provisioning both use HasEnoughCapacity.

// CapacityName is the name of the controller that publishes local-path's
// CSIStorageCapacity objects.
const CapacityName = "local-path-capacity-controller"

// Labels on the published objects: upstream's external-provisioner's
// managed-by, and the node they describe (its name, or a hash of a name
// that is no label value); the annotation LabelNode has the node's name.
const (
	LabelManagedBy = "csi.storage.k8s.io/managed-by"
	LabelNode      = "local-path.skiff.io/node"
)

// CapacityTracked reports whether provisioner declares storage capacity
// tracking, as upstream's scheduler decides whether to check capacity at
// all: a CSIDriver of that name with storageCapacity: true. The built-in
// local-path provisioner always tracks it: its name (skiff.io/local-path,
// with a '/') cannot be a CSIDriver's name.
func CapacityTracked(drivers storagelisters.CSIDriverLister, provisioner string) (bool, error) {
	if provisioner == localpath.Name {
		return true, nil
	}
	if len(validation.IsDNS1123Subdomain(provisioner)) != 0 {
		return false, nil
	}
	d, err := drivers.Get(provisioner)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return d.Spec.StorageCapacity != nil && *d.Spec.StorageCapacity, nil
}

// HasEnoughCapacity is upstream's rule: some CSIStorageCapacity of the
// class whose node topology selects the node has a maximumVolumeSize (or,
// without one, a capacity) of at least size bytes.
func HasEnoughCapacity(capacities []*storagev1.CSIStorageCapacity, class string, node *corev1.Node, size int64) bool {
	for _, c := range capacities {
		if c.StorageClassName != class || c.NodeTopology == nil {
			continue
		}
		limit := c.MaximumVolumeSize
		if limit == nil {
			limit = c.Capacity
		}
		if limit == nil || limit.Value() < size {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(c.NodeTopology)
		if err != nil {
			continue
		}
		if sel.Matches(labels.Set(node.Labels)) {
			return true
		}
	}
	return false
}

// LocalPathCapacity is the number the capacity controller publishes for
// a node: the available space its agent reported, less what the node's
// local-path volumes may still grow into (their total capacity minus what
// their directories use), never below zero. ok is false when the node has
// not reported (yet).
func LocalPathCapacity(node *corev1.Node, volumes []*corev1.PersistentVolume) (capacity int64, ok bool) {
	avail, err := strconv.ParseInt(node.Annotations[localpath.AnnAvailableBytes], 10, 64)
	if err != nil {
		return 0, false
	}
	used, _ := strconv.ParseInt(node.Annotations[localpath.AnnUsedBytes], 10, 64)
	var promised int64
	for _, v := range volumes {
		if v.Annotations[AnnDynamicallyProvisioned] != localpath.Name || v.Spec.NodeAffinity == nil || !NodeAffinityMatches(v, node) {
			continue
		}
		q := v.Spec.Capacity[corev1.ResourceStorage]
		promised += q.Value()
	}
	return max(0, avail-max(0, promised-used)), true
}

// CapacityConfig is what the capacity controller needs.
type CapacityConfig struct {
	Client    kubernetes.Interface
	Informers informers.SharedInformerFactory
	Logger    *slog.Logger
	// Namespace holds the published objects (default kube-system).
	Namespace string
}

// CapacityController publishes one CSIStorageCapacity per node and
// local-path StorageClass (local-path's storage capacity tracking) and
// removes those of nodes and classes that are gone.
type CapacityController struct {
	client  kubernetes.Interface
	ns      string
	nodes   corelisters.NodeLister
	volumes corelisters.PersistentVolumeLister
	classes storagelisters.StorageClassLister
	caps    storagelisters.CSIStorageCapacityLister
	synced  []cache.InformerSynced
	log     *slog.Logger
	queue   workqueue.TypedRateLimitingInterface[string]
}

var _ controllers.Controller = (*CapacityController)(nil)

// NewCapacity returns the controller with its informer handlers registered.
func NewCapacity(cfg CapacityConfig) (*CapacityController, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Namespace == "" {
		cfg.Namespace = metav1.NamespaceSystem
	}
	f := cfg.Informers
	nodes, pvs, scs, caps := f.Core().V1().Nodes(), f.Core().V1().PersistentVolumes(), f.Storage().V1().StorageClasses(), f.Storage().V1().CSIStorageCapacities()
	c := &CapacityController{
		client: cfg.Client, ns: cfg.Namespace,
		nodes: nodes.Lister(), volumes: pvs.Lister(), classes: scs.Lister(), caps: caps.Lister(),
		synced: []cache.InformerSynced{nodes.Informer().HasSynced, pvs.Informer().HasSynced, scs.Informer().HasSynced, caps.Informer().HasSynced},
		log:    cfg.Logger.With("component", CapacityName),
		queue:  controllers.NewQueue("local-path-capacity"),
	}
	onNode := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add(key)
		}
	}
	if _, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onNode, DeleteFunc: onNode,
		UpdateFunc: func(o, n any) {
			on, ok1 := o.(*corev1.Node)
			nn, ok2 := n.(*corev1.Node)
			if !ok1 || !ok2 || on.Annotations[localpath.AnnAvailableBytes] != nn.Annotations[localpath.AnnAvailableBytes] ||
				on.Annotations[localpath.AnnUsedBytes] != nn.Annotations[localpath.AnnUsedBytes] || !apiequality.Semantic.DeepEqual(on.Labels, nn.Labels) {
				onNode(n)
			}
		},
	}); err != nil {
		return nil, err
	}
	// A volume changes what its node has promised.
	onVolume := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if v, ok := obj.(*corev1.PersistentVolume); ok && v.Annotations[AnnDynamicallyProvisioned] == localpath.Name {
			c.enqueueNodes(func(n *corev1.Node) bool { return NodeAffinityMatches(v, n) })
		}
	}
	if _, err := pvs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onVolume, UpdateFunc: func(_, n any) { onVolume(n) }, DeleteFunc: onVolume,
	}); err != nil {
		return nil, err
	}
	all := func(any) { c.enqueueNodes(func(*corev1.Node) bool { return true }) }
	if _, err := scs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: all, UpdateFunc: func(_, n any) { all(n) }, DeleteFunc: all,
	}); err != nil {
		return nil, err
	}
	// Objects of nodes that are gone (or changed by someone else).
	onCap := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if o, ok := obj.(*storagev1.CSIStorageCapacity); ok && o.Labels[LabelManagedBy] == CapacityName {
			if n := o.Annotations[LabelNode]; n != "" {
				c.queue.Add(n)
			}
		}
	}
	if _, err := caps.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onCap, UpdateFunc: func(_, n any) { onCap(n) }, DeleteFunc: onCap,
	}); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *CapacityController) enqueueNodes(match func(*corev1.Node) bool) {
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return
	}
	for _, n := range nodes {
		if match(n) {
			c.queue.Add(n.Name)
		}
	}
}

// Name implements controllers.Controller.
func (c *CapacityController) Name() string { return CapacityName }

// Run implements controllers.Controller.
func (c *CapacityController) Run(ctx context.Context, workers int) error {
	if !controllers.WaitForSync(ctx, c.synced...) {
		return ctx.Err()
	}
	controllers.RunWorkers(ctx, c.queue, workers, c.log, c.Reconcile)
	return nil
}

// nodeLabel is the node's LabelNode value: its name, or a hash when the
// name is not a valid label value.
func nodeLabel(node string) string {
	if len(validation.IsValidLabelValue(node)) == 0 {
		return node
	}
	h := sha256.Sum256([]byte(node))
	return "sha256-" + hex.EncodeToString(h[:16])
}

// capacityName is the object's name for a class and node: readable when
// it fits, else the class and a hash.
func capacityName(class, node string) string {
	n := class + "-" + node
	if len(n) <= 200 && len(validation.IsDNS1123Subdomain(n)) == 0 {
		return n
	}
	h := sha256.Sum256([]byte(class + "/" + node))
	return "local-path-" + hex.EncodeToString(h[:16])
}

// Reconcile makes the node's CSIStorageCapacity objects match its report:
// one per local-path class while the node exists and has reported, none
// otherwise.
func (c *CapacityController) Reconcile(ctx context.Context, nodeName string) (controllers.Result, error) {
	want := map[string]*storagev1.CSIStorageCapacity{}
	node, err := c.nodes.Get(nodeName)
	if err != nil && !apierrors.IsNotFound(err) {
		return controllers.Result{}, err
	}
	if node != nil {
		vols, err := c.volumes.List(labels.Everything())
		if err != nil {
			return controllers.Result{}, err
		}
		if bytes, ok := LocalPathCapacity(node, vols); ok {
			classes, err := c.classes.List(labels.Everything())
			if err != nil {
				return controllers.Result{}, err
			}
			host := node.Labels[corev1.LabelHostname]
			if host == "" {
				host = node.Name
			}
			for _, sc := range classes {
				if sc.Provisioner != localpath.Name {
					continue
				}
				name := capacityName(sc.Name, node.Name)
				want[name] = &storagev1.CSIStorageCapacity{
					ObjectMeta: metav1.ObjectMeta{
						Name: name, Namespace: c.ns,
						Labels:      map[string]string{LabelManagedBy: CapacityName, LabelNode: nodeLabel(nodeName)},
						Annotations: map[string]string{LabelNode: nodeName},
					},
					NodeTopology:     &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelHostname: host}},
					StorageClassName: sc.Name,
					Capacity:         resource.NewQuantity(bytes, resource.BinarySI),
				}
			}
		}
	}
	have, err := c.caps.CSIStorageCapacities(c.ns).List(labels.SelectorFromSet(labels.Set{LabelManagedBy: CapacityName, LabelNode: nodeLabel(nodeName)}))
	if err != nil {
		return controllers.Result{}, err
	}
	api := c.client.StorageV1().CSIStorageCapacities(c.ns)
	for _, o := range have {
		w, ok := want[o.Name]
		delete(want, o.Name)
		switch {
		case !ok || o.Annotations[LabelNode] != nodeName:
			uid := o.UID
			if err := api.Delete(ctx, o.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}); err != nil && !apierrors.IsNotFound(err) {
				return controllers.Result{}, fmt.Errorf("delete CSIStorageCapacity %s: %w", o.Name, err)
			}
		case o.Capacity == nil || o.Capacity.Cmp(*w.Capacity) != 0 || o.StorageClassName != w.StorageClassName ||
			!apiequality.Semantic.DeepEqual(o.NodeTopology, w.NodeTopology):
			u := o.DeepCopy()
			u.Capacity, u.StorageClassName, u.NodeTopology = w.Capacity, w.StorageClassName, w.NodeTopology
			if _, err := api.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
				return controllers.Result{}, fmt.Errorf("update CSIStorageCapacity %s: %w", o.Name, err)
			}
		}
	}
	for _, w := range want {
		if _, err := api.Create(ctx, w, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return controllers.Result{}, fmt.Errorf("create CSIStorageCapacity %s: %w", w.Name, err)
		}
		c.log.Info("published local-path capacity", "node", nodeName, "class", w.StorageClassName, "capacity", w.Capacity.String())
	}
	return controllers.Result{}, nil
}
