// Package persistentvolume is the PersistentVolume controller set of the
// controller manager: the binder (persistentvolume-binder-controller)
// that matches claims to volumes, provisions volumes through built-in
// provisioners, keeps claim and volume phases and reclaims released
// volumes; and the pvc- and pv-protection controllers that hold the
// kubernetes.io/pvc-protection and kubernetes.io/pv-protection
// finalizers while a claim is used by a pod or a volume is bound. All
// follow upstream's semantics; see README.md.
package persistentvolume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/persistentvolume/provisioner"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
)

// Name is the binder's upstream name.
const Name = "persistentvolume-binder-controller"

// Event reasons, as upstream.
const (
	EventFailedBinding          = "FailedBinding"
	EventWaitForFirstConsumer   = "WaitForFirstConsumer"
	EventWaitForPodScheduled    = "WaitForPodScheduled"
	EventProvisioningFailed     = "ProvisioningFailed"
	EventProvisioningSucceeded  = "ProvisioningSucceeded"
	EventExternalProvisioning   = "ExternalProvisioning"
	EventVolumeMismatch         = "VolumeMismatch"
	EventClaimLost              = "ClaimLost"
	EventClaimMisbound          = "ClaimMisbound"
	EventVolumeFailedDelete     = "VolumeFailedDelete"
	EventVolumeFailedRecycle    = "VolumeFailedRecycle"
	EventVolumeResizeFailed     = "VolumeResizeFailed"
	EventVolumeResizeSuccessful = "VolumeResizeSuccessful"
)

// Config is what the binder needs.
type Config struct {
	Client    kubernetes.Interface
	Informers informers.SharedInformerFactory
	Recorder  record.EventRecorder
	Logger    *slog.Logger
	// Provisioners are the built-in dynamic provisioners by name.
	Provisioners []provisioner.Provisioner
}

// Binder is the persistentvolume-binder-controller.
type Binder struct {
	client  kubernetes.Interface
	claims  corelisters.PersistentVolumeClaimLister
	volumes corelisters.PersistentVolumeLister
	classes storagelisters.StorageClassLister
	nodes   corelisters.NodeLister
	pods    corelisters.PodLister
	drivers storagelisters.CSIDriverLister
	caps    storagelisters.CSIStorageCapacityLister
	synced  []cache.InformerSynced
	rec     record.EventRecorder
	log     *slog.Logger
	queue   workqueue.TypedRateLimitingInterface[string]
	provs   map[string]provisioner.Provisioner
}

var _ controllers.Controller = (*Binder)(nil)

// deletePendingRecheck is how soon a volume whose storage its node is
// removing is looked at again.
const deletePendingRecheck = 2 * time.Second

const (
	claimPrefix  = "claim/"
	volumePrefix = "volume/"
)

// New returns the binder with its informer handlers registered.
func New(cfg Config) (*Binder, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	f := cfg.Informers
	pvcs, pvs, scs, nodes := f.Core().V1().PersistentVolumeClaims(), f.Core().V1().PersistentVolumes(), f.Storage().V1().StorageClasses(), f.Core().V1().Nodes()
	drivers, caps, pods := f.Storage().V1().CSIDrivers(), f.Storage().V1().CSIStorageCapacities(), f.Core().V1().Pods()
	b := &Binder{
		client: cfg.Client, claims: pvcs.Lister(), volumes: pvs.Lister(), classes: scs.Lister(), nodes: nodes.Lister(),
		pods: pods.Lister(), drivers: drivers.Lister(), caps: caps.Lister(),
		synced: []cache.InformerSynced{pvcs.Informer().HasSynced, pvs.Informer().HasSynced, scs.Informer().HasSynced, nodes.Informer().HasSynced,
			drivers.Informer().HasSynced, caps.Informer().HasSynced, pods.Informer().HasSynced},
		rec: cfg.Recorder, log: cfg.Logger.With("component", Name),
		queue: controllers.NewQueue("volumes"),
		provs: map[string]provisioner.Provisioner{},
	}
	for _, p := range cfg.Provisioners {
		b.provs[p.Name()] = p
	}
	onClaim := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			b.queue.Add(claimPrefix + key)
		}
		// A deleted claim releases its volume.
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if c, ok := obj.(*corev1.PersistentVolumeClaim); ok && c.Spec.VolumeName != "" {
			b.queue.Add(volumePrefix + c.Spec.VolumeName)
		}
	}
	if _, err := pvcs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onClaim, UpdateFunc: func(_, o any) { onClaim(o) }, DeleteFunc: onClaim,
	}); err != nil {
		return nil, err
	}
	onVolume := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		v, ok := obj.(*corev1.PersistentVolume)
		if !ok {
			return
		}
		b.queue.Add(volumePrefix + v.Name)
		if r := v.Spec.ClaimRef; r != nil {
			b.queue.Add(claimPrefix + r.Namespace + "/" + r.Name)
		}
	}
	if _, err := pvs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onVolume, UpdateFunc: func(_, o any) { onVolume(o) }, DeleteFunc: onVolume,
	}); err != nil {
		return nil, err
	}
	// An unscheduled pod's claims say they wait for it (WaitForPodScheduled);
	// the pod's first update (the scheduler's PodScheduled condition)
	// requeues them too.
	onPod := func(obj any) {
		if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName == "" && p.DeletionTimestamp == nil {
			for _, v := range p.Spec.Volumes {
				if v.PersistentVolumeClaim != nil {
					b.queue.Add(claimPrefix + p.Namespace + "/" + v.PersistentVolumeClaim.ClaimName)
				}
			}
		}
	}
	if _, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onPod, UpdateFunc: func(o, n any) {
			if op, ok := o.(*corev1.Pod); ok && len(op.Status.Conditions) == 0 {
				onPod(n)
			}
		},
	}); err != nil {
		return nil, err
	}
	// A new class may serve claims that were waiting for it.
	if _, err := scs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { b.requeuePendingClaims() }, UpdateFunc: func(any, any) { b.requeuePendingClaims() },
	}); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *Binder) requeuePendingClaims() {
	all, err := b.claims.List(labels.Everything())
	if err != nil {
		return
	}
	for _, c := range all {
		if c.Status.Phase != corev1.ClaimBound {
			b.queue.Add(claimPrefix + c.Namespace + "/" + c.Name)
		}
	}
}

// Name implements controllers.Controller.
func (b *Binder) Name() string { return Name }

// Run implements controllers.Controller.
func (b *Binder) Run(ctx context.Context, workers int) error {
	if !controllers.WaitForSync(ctx, b.synced...) {
		return ctx.Err()
	}
	controllers.RunWorkers(ctx, b.queue, workers, b.log, b.Reconcile)
	return nil
}

// Reconcile syncs one claim ("claim/<ns>/<name>") or volume
// ("volume/<name>").
func (b *Binder) Reconcile(ctx context.Context, key string) (controllers.Result, error) {
	if k, ok := strings.CutPrefix(key, claimPrefix); ok {
		ns, name, err := cache.SplitMetaNamespaceKey(k)
		if err != nil {
			return controllers.Result{}, nil
		}
		c, err := b.claims.PersistentVolumeClaims(ns).Get(name)
		if apierrors.IsNotFound(err) {
			return controllers.Result{}, nil
		}
		if err != nil {
			return controllers.Result{}, err
		}
		return controllers.Result{}, b.syncClaim(ctx, c.DeepCopy())
	}
	if name, ok := strings.CutPrefix(key, volumePrefix); ok {
		v, err := b.volumes.Get(name)
		if apierrors.IsNotFound(err) {
			return controllers.Result{}, nil
		}
		if err != nil {
			return controllers.Result{}, err
		}
		return controllers.Result{}, b.syncVolume(ctx, v.DeepCopy())
	}
	return controllers.Result{}, nil
}

func (b *Binder) event(obj any, typ, reason, msg string) {
	if b.rec == nil {
		return
	}
	switch o := obj.(type) {
	case *corev1.PersistentVolumeClaim:
		b.rec.Event(o, typ, reason, msg)
	case *corev1.PersistentVolume:
		b.rec.Event(o, typ, reason, msg)
	}
}

// syncClaim is upstream's syncClaim: unbound claims are matched or
// provisioned, bound claims are checked against their volume.
func (b *Binder) syncClaim(ctx context.Context, c *corev1.PersistentVolumeClaim) error {
	if c.Annotations[AnnBindCompleted] == "" {
		return b.syncUnboundClaim(ctx, c)
	}
	return b.syncBoundClaim(ctx, c)
}

func (b *Binder) syncUnboundClaim(ctx context.Context, c *corev1.PersistentVolumeClaim) error {
	if c.Spec.VolumeName == "" {
		var class *storagev1.StorageClass
		className := ClaimClass(c)
		if className != "" {
			cl, err := b.classes.Get(className)
			if err != nil && !apierrors.IsNotFound(err) {
				return err
			}
			if err == nil {
				class = cl
			}
		}
		delayed := DelayedBinding(class)
		vols, err := b.volumes.List(labels.Everything())
		if err != nil {
			return err
		}
		v, err := FindMatch(c, vols, nil, delayed)
		if err != nil {
			b.event(c, corev1.EventTypeWarning, EventFailedBinding, err.Error())
			return b.setClaimPhase(ctx, c, corev1.ClaimPending)
		}
		if v != nil {
			return b.bind(ctx, v.DeepCopy(), c)
		}
		switch {
		case className == "":
			b.event(c, corev1.EventTypeNormal, EventFailedBinding, "no persistent volumes available for this claim and no storage class is set")
		case class == nil:
			b.event(c, corev1.EventTypeWarning, EventProvisioningFailed, fmt.Sprintf("storageclass.storage.k8s.io %q not found", className))
		case delayed && c.Annotations[AnnSelectedNode] == "":
			b.waitingEvent(c)
		default:
			if err := b.provision(ctx, c, class); err != nil {
				return err
			}
		}
		return b.setClaimPhase(ctx, c, corev1.ClaimPending)
	}
	// The claim asks for one volume.
	v, err := b.volumes.Get(c.Spec.VolumeName)
	if apierrors.IsNotFound(err) {
		b.event(c, corev1.EventTypeNormal, EventFailedBinding, fmt.Sprintf("volume %q not found", c.Spec.VolumeName))
		return b.setClaimPhase(ctx, c, corev1.ClaimPending)
	}
	if err != nil {
		return err
	}
	switch {
	case v.Spec.ClaimRef == nil || BoundToClaim(v, c):
		if msg := Mismatch(v, c); msg != "" {
			b.event(c, corev1.EventTypeWarning, EventVolumeMismatch, "Cannot bind to requested volume \""+v.Name+"\": "+msg)
			return b.setClaimPhase(ctx, c, corev1.ClaimPending)
		}
		return b.bind(ctx, v.DeepCopy(), c)
	default:
		b.event(c, corev1.EventTypeWarning, EventFailedBinding, fmt.Sprintf("volume %q already bound to a different claim.", v.Name))
		return b.setClaimPhase(ctx, c, corev1.ClaimPending)
	}
}

// waitingEvent is upstream's event for an unbound WaitForFirstConsumer
// claim: WaitForPodScheduled naming the unscheduled pods that use it, or
// WaitForFirstConsumer when there are none.
func (b *Binder) waitingEvent(c *corev1.PersistentVolumeClaim) {
	var names []string
	if pods, err := b.pods.Pods(c.Namespace).List(labels.Everything()); err == nil {
		for _, p := range pods {
			if p.Spec.NodeName != "" || p.DeletionTimestamp != nil {
				continue
			}
			for _, v := range p.Spec.Volumes {
				if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == c.Name {
					names = append(names, p.Name)
					break
				}
			}
		}
	}
	switch len(names) {
	case 0:
		b.event(c, corev1.EventTypeNormal, EventWaitForFirstConsumer, "waiting for first consumer to be created before binding")
	case 1:
		b.event(c, corev1.EventTypeNormal, EventWaitForPodScheduled, fmt.Sprintf("waiting for pod %s to be scheduled", names[0]))
	default:
		slices.Sort(names)
		b.event(c, corev1.EventTypeNormal, EventWaitForPodScheduled, fmt.Sprintf("waiting for pods %s to be scheduled", strings.Join(names, ",")))
	}
}

func (b *Binder) syncBoundClaim(ctx context.Context, c *corev1.PersistentVolumeClaim) error {
	if c.Spec.VolumeName == "" {
		if c.Status.Phase != corev1.ClaimLost {
			b.event(c, corev1.EventTypeWarning, EventClaimLost, "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!")
		}
		return b.setClaimPhase(ctx, c, corev1.ClaimLost)
	}
	v, err := b.volumes.Get(c.Spec.VolumeName)
	if apierrors.IsNotFound(err) {
		// The cache may lag behind a volume just created: ask the API.
		v, err = b.client.CoreV1().PersistentVolumes().Get(ctx, c.Spec.VolumeName, metav1.GetOptions{})
	}
	if apierrors.IsNotFound(err) {
		if c.Status.Phase != corev1.ClaimLost {
			b.event(c, corev1.EventTypeWarning, EventClaimLost, "Bound claim has lost its PersistentVolume. Data on the volume is lost!")
		}
		return b.setClaimPhase(ctx, c, corev1.ClaimLost)
	}
	if err != nil {
		return err
	}
	if v.Spec.ClaimRef == nil || v.Spec.ClaimRef.UID == c.UID || BoundToClaim(v, c) {
		if err := b.bind(ctx, v.DeepCopy(), c.DeepCopy()); err != nil {
			return err
		}
		return b.expand(ctx, v.DeepCopy(), c)
	}
	if c.Status.Phase != corev1.ClaimLost {
		b.event(c, corev1.EventTypeWarning, EventClaimMisbound, "Two claims are bound to the same volume, this one is bound incorrectly")
	}
	return b.setClaimPhase(ctx, c, corev1.ClaimLost)
}

// expand grows the volume of a bound claim whose request exceeds its
// capacity, when the claim's class allows expansion and the volume's
// provisioner can expand. As upstream's resizers, the claim is first
// marked in progress (condition Resizing, status.allocatedResources set
// to the new size, allocatedResourceStatuses ControllerResizeInProgress),
// then the volume's capacity grows, then the claim's capacity; the
// built-in volumes need no filesystem resize on the node, so the claim
// ends as upstream shows an online expansion that needs none: conditions
// and allocatedResourceStatuses cleared, allocatedResources and capacity
// at the new size.
func (b *Binder) expand(ctx context.Context, v *corev1.PersistentVolume, c *corev1.PersistentVolumeClaim) error {
	req := c.Spec.Resources.Requests[corev1.ResourceStorage]
	have := v.Spec.Capacity[corev1.ResourceStorage]
	if req.Cmp(have) <= 0 {
		if resizing(c) {
			// The volume grew but the claim's last write did not land.
			return b.finishResize(ctx, c, have)
		}
		return nil
	}
	class, _ := b.classes.Get(ClaimClass(c))
	exp, ok := b.provs[v.Annotations[AnnDynamicallyProvisioned]].(provisioner.Expander)
	if class == nil || class.AllowVolumeExpansion == nil || !*class.AllowVolumeExpansion || !ok {
		b.event(c, corev1.EventTypeWarning, EventVolumeResizeFailed, "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize")
		return nil
	}
	c, err := b.markResizing(ctx, c, req)
	if err != nil {
		return err
	}
	if err := exp.Expand(ctx, v, req); err != nil {
		b.event(c, corev1.EventTypeWarning, EventVolumeResizeFailed, fmt.Sprintf("resize volume %q: %v", v.Name, err))
		return fmt.Errorf("expand volume %s: %w", v.Name, err)
	}
	v.Spec.Capacity[corev1.ResourceStorage] = req.DeepCopy()
	if _, err := b.client.CoreV1().PersistentVolumes().Update(ctx, v, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("record expanded capacity of volume %s: %w", v.Name, err)
	}
	if err := b.finishResize(ctx, c, req); err != nil {
		return err
	}
	b.event(c, corev1.EventTypeNormal, EventVolumeResizeSuccessful, fmt.Sprintf("resize volume %q to %s succeeded", v.Name, req.String()))
	return nil
}

// resizing reports whether the claim carries an unfinished resize.
func resizing(c *corev1.PersistentVolumeClaim) bool {
	for _, cond := range c.Status.Conditions {
		if cond.Type == corev1.PersistentVolumeClaimResizing {
			return true
		}
	}
	_, ok := c.Status.AllocatedResourceStatuses[corev1.ResourceStorage]
	return ok
}

// markResizing records that the claim's volume is being expanded to size
// (upstream's MarkControllerResizeInProgress).
func (b *Binder) markResizing(ctx context.Context, c *corev1.PersistentVolumeClaim, size resource.Quantity) (*corev1.PersistentVolumeClaim, error) {
	c = c.DeepCopy()
	c.Status.Conditions = withoutResizeConditions(c.Status.Conditions)
	c.Status.Conditions = append(c.Status.Conditions, corev1.PersistentVolumeClaimCondition{
		Type: corev1.PersistentVolumeClaimResizing, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now(),
	})
	if c.Status.AllocatedResources == nil {
		c.Status.AllocatedResources = corev1.ResourceList{}
	}
	c.Status.AllocatedResources[corev1.ResourceStorage] = size.DeepCopy()
	if c.Status.AllocatedResourceStatuses == nil {
		c.Status.AllocatedResourceStatuses = map[corev1.ResourceName]corev1.ClaimResourceStatus{}
	}
	c.Status.AllocatedResourceStatuses[corev1.ResourceStorage] = corev1.PersistentVolumeClaimControllerResizeInProgress
	nc, err := b.client.CoreV1().PersistentVolumeClaims(c.Namespace).UpdateStatus(ctx, c, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("mark claim %s/%s resizing: %w", c.Namespace, c.Name, err)
	}
	return nc, nil
}

// finishResize records the claim's new capacity and clears the resize
// conditions and status (upstream's MarkResizeFinished).
func (b *Binder) finishResize(ctx context.Context, c *corev1.PersistentVolumeClaim, size resource.Quantity) error {
	c = c.DeepCopy()
	c.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: size.DeepCopy()}
	c.Status.Conditions = withoutResizeConditions(c.Status.Conditions)
	delete(c.Status.AllocatedResourceStatuses, corev1.ResourceStorage)
	if len(c.Status.AllocatedResourceStatuses) == 0 {
		c.Status.AllocatedResourceStatuses = nil
	}
	if _, err := b.client.CoreV1().PersistentVolumeClaims(c.Namespace).UpdateStatus(ctx, c, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("record expanded capacity of claim %s/%s: %w", c.Namespace, c.Name, err)
	}
	return nil
}

func withoutResizeConditions(in []corev1.PersistentVolumeClaimCondition) []corev1.PersistentVolumeClaimCondition {
	var out []corev1.PersistentVolumeClaimCondition
	for _, c := range in {
		if c.Type != corev1.PersistentVolumeClaimResizing && c.Type != corev1.PersistentVolumeClaimFileSystemResizePending {
			out = append(out, c)
		}
	}
	return out
}

// bind binds v and c to each other: the volume first (claimRef, phase
// Bound), then the claim (volumeName, annotations, phase Bound with the
// volume's capacity and access modes), as upstream. Each write happens only
// when something changes, so a repeated bind is a no-op.
func (b *Binder) bind(ctx context.Context, v *corev1.PersistentVolume, c *corev1.PersistentVolumeClaim) error {
	// Volume side.
	if !BoundToClaim(v, c) || v.Spec.ClaimRef.UID != c.UID {
		if v.Spec.ClaimRef == nil {
			metav1SetAnn(&v.ObjectMeta, AnnBoundByController, "yes")
		}
		v.Spec.ClaimRef = &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: c.Namespace, Name: c.Name, UID: c.UID, ResourceVersion: c.ResourceVersion}
		nv, err := b.client.CoreV1().PersistentVolumes().Update(ctx, v, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("bind volume %s to claim %s/%s: %w", v.Name, c.Namespace, c.Name, err)
		}
		v = nv
	}
	if v.Status.Phase != corev1.VolumeBound {
		v.Status.Phase, v.Status.Message, v.Status.Reason = corev1.VolumeBound, "", ""
		if _, err := b.client.CoreV1().PersistentVolumes().UpdateStatus(ctx, v, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("volume %s status Bound: %w", v.Name, err)
		}
	}
	// Claim side.
	if c.Spec.VolumeName != v.Name || c.Annotations[AnnBindCompleted] != "yes" {
		if c.Spec.VolumeName != v.Name {
			metav1SetAnn(&c.ObjectMeta, AnnBoundByController, "yes")
			c.Spec.VolumeName = v.Name
		}
		metav1SetAnn(&c.ObjectMeta, AnnBindCompleted, "yes")
		nc, err := b.client.CoreV1().PersistentVolumeClaims(c.Namespace).Update(ctx, c, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("bind claim %s/%s to volume %s: %w", c.Namespace, c.Name, v.Name, err)
		}
		c = nc
	}
	capacity := v.Spec.Capacity[corev1.ResourceStorage]
	have := c.Status.Capacity[corev1.ResourceStorage]
	if c.Status.Phase != corev1.ClaimBound || have.Cmp(capacity) != 0 || !sameModes(c.Status.AccessModes, v.Spec.AccessModes) {
		c.Status.Phase = corev1.ClaimBound
		c.Status.AccessModes = v.Spec.AccessModes
		c.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: capacity.DeepCopy()}
		if _, err := b.client.CoreV1().PersistentVolumeClaims(c.Namespace).UpdateStatus(ctx, c, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("claim %s/%s status Bound: %w", c.Namespace, c.Name, err)
		}
		b.log.Info("bound claim", "claim", c.Namespace+"/"+c.Name, "volume", v.Name)
	}
	return nil
}

func sameModes(a, b []corev1.PersistentVolumeAccessMode) bool {
	return len(a) == len(b) && ContainsAccessModes(a, b)
}

func metav1SetAnn(m *metav1.ObjectMeta, k, v string) {
	if m.Annotations == nil {
		m.Annotations = map[string]string{}
	}
	m.Annotations[k] = v
}

func (b *Binder) setClaimPhase(ctx context.Context, c *corev1.PersistentVolumeClaim, phase corev1.PersistentVolumeClaimPhase) error {
	if c.Status.Phase == phase {
		return nil
	}
	c.Status.Phase = phase
	if phase == corev1.ClaimPending {
		c.Status.Capacity, c.Status.AccessModes = nil, nil
	}
	if _, err := b.client.CoreV1().PersistentVolumeClaims(c.Namespace).UpdateStatus(ctx, c, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("claim %s/%s status %s: %w", c.Namespace, c.Name, phase, err)
	}
	return nil
}

func (b *Binder) setVolumePhase(ctx context.Context, v *corev1.PersistentVolume, phase corev1.PersistentVolumePhase, msg string) (*corev1.PersistentVolume, error) {
	if v.Status.Phase == phase && v.Status.Message == msg {
		return v, nil
	}
	v.Status.Phase, v.Status.Message = phase, msg
	nv, err := b.client.CoreV1().PersistentVolumes().UpdateStatus(ctx, v, metav1.UpdateOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return v, nil
		}
		return nil, fmt.Errorf("volume %s status %s: %w", v.Name, phase, err)
	}
	return nv, nil
}

// provision makes a volume for c through its class's provisioner; the new
// volume is created pre-bound to c, and the claim's next sync binds it.
func (b *Binder) provision(ctx context.Context, c *corev1.PersistentVolumeClaim, class *storagev1.StorageClass) error {
	p, ok := b.provs[class.Provisioner]
	if !ok {
		if c.Annotations[AnnStorageProvisioner] != class.Provisioner {
			metav1SetAnn(&c.ObjectMeta, AnnStorageProvisioner, class.Provisioner)
			metav1SetAnn(&c.ObjectMeta, AnnBetaStorageProvisioner, class.Provisioner)
			nc, err := b.client.CoreV1().PersistentVolumeClaims(c.Namespace).Update(ctx, c, metav1.UpdateOptions{})
			if err != nil {
				return fmt.Errorf("annotate claim %s/%s with its provisioner: %w", c.Namespace, c.Name, err)
			}
			*c = *nc
		}
		b.event(c, corev1.EventTypeNormal, EventExternalProvisioning, fmt.Sprintf("Waiting for a volume to be created either by the external provisioner '%s' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.", class.Provisioner))
		return nil
	}
	name := "pvc-" + string(c.UID)
	if _, err := b.volumes.Get(name); err == nil {
		return nil // made already; its sync binds it
	}
	fail := func(msg string) {
		b.event(c, corev1.EventTypeWarning, EventProvisioningFailed, fmt.Sprintf("failed to provision volume with StorageClass %q: %s", class.Name, msg))
	}
	if !ContainsAccessModes(p.AccessModes(), c.Spec.AccessModes) {
		fail(fmt.Sprintf("%s supports access modes %v, not %v", p.Name(), p.AccessModes(), c.Spec.AccessModes))
		return nil
	}
	if _, ok := c.Spec.Resources.Requests[corev1.ResourceStorage]; !ok {
		fail("claim requests no storage (spec.resources.requests.storage)")
		return nil
	}
	var node *corev1.Node
	if n := c.Annotations[AnnSelectedNode]; n != "" {
		nd, err := b.nodes.Get(n)
		if apierrors.IsNotFound(err) {
			// The cache may lag a node just created: ask the API server.
			nd, err = b.client.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
		}
		if apierrors.IsNotFound(err) {
			// The node the scheduler chose is gone: as upstream's
			// provisioners do, drop the choice so the scheduler places the
			// claim's consumer again (and selects another node).
			fail(fmt.Sprintf("selected node %q not found: rescheduling", n))
			return b.reschedule(ctx, c)
		}
		if err != nil {
			fail(fmt.Sprintf("selected node %q: %v", n, err))
			return nil
		}
		node = nd
		// Storage capacity tracking: the node must have room for the
		// claim, else the choice goes back to the scheduler, as upstream's
		// provisioners do when a node ran out of space.
		if msg, err := b.checkCapacity(c, class, node); err != nil {
			return err
		} else if msg != "" {
			fail(msg)
			return b.reschedule(ctx, c)
		}
	}
	pv, err := p.Provision(ctx, provisioner.Options{PVName: name, Claim: c, Class: class, SelectedNode: node})
	if err != nil {
		fail(err.Error())
		if errors.Is(err, provisioner.ErrUnsupported) {
			return nil
		}
		return err
	}
	pv.Name = name
	metav1SetAnn(&pv.ObjectMeta, AnnDynamicallyProvisioned, p.Name())
	metav1SetAnn(&pv.ObjectMeta, AnnBoundByController, "yes")
	pv.Spec.ClaimRef = &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: c.Namespace, Name: c.Name, UID: c.UID, ResourceVersion: c.ResourceVersion}
	pv.Spec.StorageClassName = class.Name
	pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimDelete
	if class.ReclaimPolicy != nil {
		pv.Spec.PersistentVolumeReclaimPolicy = *class.ReclaimPolicy
	}
	pv.Spec.MountOptions = class.MountOptions
	pv.Spec.VolumeMode = c.Spec.VolumeMode
	if len(pv.Spec.AccessModes) == 0 {
		pv.Spec.AccessModes = c.Spec.AccessModes
	}
	if _, ok := pv.Spec.Capacity[corev1.ResourceStorage]; !ok {
		pv.Spec.Capacity = corev1.ResourceList{corev1.ResourceStorage: c.Spec.Resources.Requests[corev1.ResourceStorage]}
	}
	if _, err := b.client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		fail(err.Error())
		return fmt.Errorf("create volume %s for claim %s/%s: %w", name, c.Namespace, c.Name, err)
	}
	capacity := pv.Spec.Capacity[corev1.ResourceStorage]
	b.event(c, corev1.EventTypeNormal, EventProvisioningSucceeded, fmt.Sprintf("Successfully provisioned volume %s using %s (%s)", name, p.Name(), capacity.String()))
	b.log.Info("provisioned volume", "claim", c.Namespace+"/"+c.Name, "volume", name, "provisioner", p.Name())
	return nil
}

// checkCapacity returns why node cannot hold the claim's volume when the
// class's provisioner tracks storage capacity ("" when it can, or when
// capacity is not tracked).
func (b *Binder) checkCapacity(c *corev1.PersistentVolumeClaim, class *storagev1.StorageClass, node *corev1.Node) (string, error) {
	tracked, err := CapacityTracked(b.drivers, class.Provisioner)
	if err != nil || !tracked {
		return "", err
	}
	req := c.Spec.Resources.Requests[corev1.ResourceStorage]
	all, err := b.caps.List(labels.Everything())
	if err != nil {
		return "", err
	}
	if HasEnoughCapacity(all, class.Name, node, req.Value()) {
		return "", nil
	}
	return fmt.Sprintf("node %q does not have enough free storage for %s (no CSIStorageCapacity of class %q for the node has room for it): rescheduling", node.Name, req.String(), class.Name), nil
}

// reschedule removes the scheduler's node choice from a claim whose
// provisioning cannot happen there.
func (b *Binder) reschedule(ctx context.Context, c *corev1.PersistentVolumeClaim) error {
	nc := c.DeepCopy()
	delete(nc.Annotations, AnnSelectedNode)
	if _, err := b.client.CoreV1().PersistentVolumeClaims(c.Namespace).Update(ctx, nc, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("remove %s from claim %s/%s: %w", AnnSelectedNode, c.Namespace, c.Name, err)
	}
	b.log.Info("claim's selected node is gone; rescheduling", "claim", c.Namespace+"/"+c.Name, "node", c.Annotations[AnnSelectedNode])
	return nil
}

// syncVolume is upstream's syncVolume: phases Available, Bound and
// Released, and reclaim of released volumes.
func (b *Binder) syncVolume(ctx context.Context, v *corev1.PersistentVolume) error {
	r := v.Spec.ClaimRef
	if r == nil {
		_, err := b.setVolumePhase(ctx, v, corev1.VolumeAvailable, "")
		return err
	}
	if r.UID == "" {
		// Pre-bound by the user to a claim name: the claim's sync binds.
		b.queue.Add(claimPrefix + r.Namespace + "/" + r.Name)
		_, err := b.setVolumePhase(ctx, v, corev1.VolumeAvailable, "")
		return err
	}
	c, err := b.claims.PersistentVolumeClaims(r.Namespace).Get(r.Name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if c == nil || c.UID != r.UID {
		// The cache may be behind: only the API server may say the
		// claim is gone before its volume is released.
		live, err := b.client.CoreV1().PersistentVolumeClaims(r.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
		switch {
		case err == nil && live.UID == r.UID:
			c = live
		case err == nil || apierrors.IsNotFound(err):
			c = nil
		default:
			return err
		}
	}
	if c == nil {
		if v.Status.Phase != corev1.VolumeReleased && v.Status.Phase != corev1.VolumeFailed {
			nv, err := b.setVolumePhase(ctx, v, corev1.VolumeReleased, "")
			if err != nil {
				return err
			}
			v = nv
		}
		return b.reclaim(ctx, v)
	}
	if c.Spec.VolumeName == "" {
		// The claim has not caught up yet (or waits for this volume).
		b.queue.Add(claimPrefix + c.Namespace + "/" + c.Name)
		return nil
	}
	if c.Spec.VolumeName == v.Name {
		_, err := b.setVolumePhase(ctx, v, corev1.VolumeBound, "")
		return err
	}
	// The claim is bound to another volume.
	if v.Annotations[AnnBoundByController] != "" {
		v.Spec.ClaimRef = nil
		delete(v.Annotations, AnnBoundByController)
	} else {
		v.Spec.ClaimRef.UID = ""
	}
	nv, err := b.client.CoreV1().PersistentVolumes().Update(ctx, v, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("unbind volume %s: %w", v.Name, err)
	}
	_, err = b.setVolumePhase(ctx, nv, corev1.VolumeAvailable, "")
	return err
}

// reclaim applies a released volume's reclaim policy.
func (b *Binder) reclaim(ctx context.Context, v *corev1.PersistentVolume) error {
	switch v.Spec.PersistentVolumeReclaimPolicy {
	case corev1.PersistentVolumeReclaimRetain, "":
		return nil
	case corev1.PersistentVolumeReclaimRecycle:
		if v.Status.Phase != corev1.VolumeFailed {
			b.event(v, corev1.EventTypeWarning, EventVolumeFailedRecycle, "Recycle is not supported; use Delete or Retain")
		}
		_, err := b.setVolumePhase(ctx, v, corev1.VolumeFailed, "Recycle is not supported")
		return err
	}
	if v.DeletionTimestamp != nil {
		return nil
	}
	p, ok := b.provs[v.Annotations[AnnDynamicallyProvisioned]]
	if !ok {
		if v.Status.Phase == corev1.VolumeFailed {
			return nil // retried only when the volume changes again
		}
		msg := "error getting deleter volume plugin for volume \"" + v.Name + "\": no deletable volume plugin matched"
		b.event(v, corev1.EventTypeWarning, EventVolumeFailedDelete, msg)
		_, err := b.setVolumePhase(ctx, v, corev1.VolumeFailed, msg)
		return err
	}
	// As upstream, a volume whose delete failed is Failed and retried on
	// every sync (here: the queue's backoff); one still being deleted
	// (on its node) keeps its phase and is looked at again shortly.
	if err := p.Delete(ctx, v); err != nil {
		if errors.Is(err, provisioner.ErrDeletePending) {
			b.log.Debug("volume deletion pending", "volume", v.Name, "reason", err.Error())
			b.queue.AddAfter(volumePrefix+v.Name, deletePendingRecheck)
			return nil
		}
		if v.Status.Phase == corev1.VolumeFailed && v.Status.Message == err.Error() {
			return err // same failure again: no new event
		}
		b.event(v, corev1.EventTypeWarning, EventVolumeFailedDelete, err.Error())
		_, serr := b.setVolumePhase(ctx, v, corev1.VolumeFailed, err.Error())
		return errors.Join(err, serr)
	}
	uid := v.UID
	err := b.client.CoreV1().PersistentVolumes().Delete(ctx, v.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete released volume %s: %w", v.Name, err)
	}
	b.log.Info("deleted released volume", "volume", v.Name, "provisioner", p.Name())
	return nil
}
