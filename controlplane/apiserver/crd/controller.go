package crd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	"k8s.io/apiextensions-apiserver/pkg/apihelpers"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	clientset "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	informers "k8s.io/apiextensions-apiserver/pkg/client/informers/externalversions"
	listers "k8s.io/apiextensions-apiserver/pkg/client/listers/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// errPending asks for a timed requeue (custom resources still being deleted).
var errPending = errors.New("custom resources are still being deleted")

// Controller accepts CRD names, marks CRDs Established, serves their
// versions through the API server's registry and cleans up deleted CRDs.
// It reads and writes CRDs and custom resources through the API.
type Controller struct {
	reg     *registry.Registry
	client  clientset.Interface
	dyn     dynamic.Interface
	log     *slog.Logger
	factory informers.SharedInformerFactory
	lister  listers.CustomResourceDefinitionLister
	synced  cache.InformerSynced
	queue   workqueue.TypedRateLimitingInterface[string]

	mu     sync.Mutex
	served map[string][]schema.GroupVersionResource // CRD name → registered resources
}

// NewController builds a controller that talks to the API server with cfg
// and registers custom resources in reg.
func NewController(cfg *rest.Config, reg *registry.Registry, log *slog.Logger) (*Controller, error) {
	if log == nil {
		log = slog.Default()
	}
	cs, err := clientset.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("apiextensions client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	f := informers.NewSharedInformerFactory(cs, 10*time.Minute)
	inf := f.Apiextensions().V1().CustomResourceDefinitions()
	c := &Controller{
		reg:     reg,
		client:  cs,
		dyn:     dyn,
		log:     log.With("component", "crd-controller"),
		factory: f,
		lister:  inf.Lister(),
		synced:  inf.Informer().HasSynced,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "crd"}),
		served: map[string][]schema.GroupVersionResource{},
	}
	_, err = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj interface{}) { c.enqueueGroup(obj) },
		UpdateFunc: func(_, obj interface{}) { c.enqueueGroup(obj) },
		DeleteFunc: func(obj interface{}) { c.enqueueGroup(obj) },
	})
	if err != nil {
		return nil, fmt.Errorf("crd informer: %w", err)
	}
	return c, nil
}

// enqueueGroup queues a CRD and the other CRDs of its group, whose names
// may have been freed or taken.
func (c *Controller) enqueueGroup(obj interface{}) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	crd, ok := obj.(*apiextensionsv1.CustomResourceDefinition)
	if !ok {
		return
	}
	c.queue.Add(crd.Name)
	all, err := c.lister.List(labels.Everything())
	if err != nil {
		return
	}
	for _, o := range all {
		if o.Spec.Group == crd.Spec.Group && o.Name != crd.Name {
			c.queue.Add(o.Name)
		}
	}
}

// Start starts the informer, serves the CRDs that already exist, then
// runs the workers until ctx ends. It returns once the existing CRDs are
// served, so a restarted server is ready with them.
func (c *Controller) Start(ctx context.Context) error {
	c.factory.Start(ctx.Done())
	syncCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), c.synced) {
		return fmt.Errorf("crd informer did not sync: %w", syncCtx.Err())
	}
	all, err := c.lister.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("list crds: %w", err)
	}
	for _, crd := range all {
		if err := c.Reconcile(ctx, crd.Name); err != nil && !errors.Is(err, errPending) {
			c.log.Warn("initial reconcile failed", "crd", crd.Name, "err", err)
		}
	}
	for i := 0; i < 2; i++ {
		go c.worker(ctx)
	}
	go func() {
		<-ctx.Done()
		c.queue.ShutDown()
		c.factory.Shutdown()
	}()
	return nil
}

func (c *Controller) worker(ctx context.Context) {
	for {
		key, quit := c.queue.Get()
		if quit {
			return
		}
		func() {
			defer c.queue.Done(key)
			err := c.Reconcile(ctx, key)
			switch {
			case err == nil:
				c.queue.Forget(key)
			case errors.Is(err, errPending):
				c.queue.AddAfter(key, 300*time.Millisecond)
			default:
				if ctx.Err() == nil {
					c.log.Info("reconcile failed, retrying", "crd", key, "err", err)
				}
				c.queue.AddRateLimited(key)
			}
		}()
	}
}

// Reconcile brings one CRD's registration and status in line with its spec.
func (c *Controller) Reconcile(ctx context.Context, name string) error {
	cached, err := c.lister.Get(name)
	if apierrors.IsNotFound(err) {
		c.unregister(name)
		return nil
	}
	if err != nil {
		return err
	}
	crd := cached.DeepCopy()
	if crd.DeletionTimestamp != nil {
		return c.finalize(ctx, crd)
	}
	status, err := c.desiredStatus(crd)
	if err != nil {
		return err
	}
	next := crd.DeepCopy()
	next.Status = *status
	if apihelpers.IsCRDConditionTrue(next, apiextensionsv1.Established) {
		// Serve before announcing Established: a client that sees the
		// condition may use the endpoint at once.
		c.register(next)
	} else {
		c.unregister(name)
	}
	if equality.Semantic.DeepEqual(crd.Status, next.Status) {
		return nil
	}
	if _, err := c.client.ApiextensionsV1().CustomResourceDefinitions().UpdateStatus(ctx, next, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("update status of %s: %w", name, err)
	}
	return nil
}

// desiredStatus computes accepted names and the NamesAccepted and
// Established conditions, as upstream's naming and establishing
// controllers do.
func (c *Controller) desiredStatus(crd *apiextensionsv1.CustomResourceDefinition) (*apiextensionsv1.CustomResourceDefinitionStatus, error) {
	resources, kinds, err := c.namesInUse(crd)
	if err != nil {
		return nil, err
	}
	req := crd.Spec.Names
	acc := crd.Status.AcceptedNames
	names := acc
	cond := apiextensionsv1.CustomResourceDefinitionCondition{Type: apiextensionsv1.NamesAccepted, Status: apiextensionsv1.ConditionUnknown}
	conflict := func(reason string, err error) {
		cond.Status, cond.Reason, cond.Message = apiextensionsv1.ConditionFalse, reason, err.Error()
	}
	if err := checkName(req.Plural, acc.Plural, resources); err != nil {
		conflict("PluralConflict", err)
	} else {
		names.Plural = req.Plural
	}
	if err := checkName(req.Singular, acc.Singular, resources); err != nil {
		conflict("SingularConflict", err)
	} else {
		names.Singular = req.Singular
	}
	if !equality.Semantic.DeepEqual(req.ShortNames, acc.ShortNames) {
		mine := map[string]bool{}
		for _, s := range acc.ShortNames {
			mine[s] = true
		}
		var msgs []string
		for _, s := range req.ShortNames {
			if mine[s] {
				continue
			}
			if err := checkName(s, "", resources); err != nil {
				msgs = append(msgs, err.Error())
			}
		}
		if len(msgs) > 0 {
			conflict("ShortNamesConflict", errors.New(strings.Join(msgs, ", ")))
		} else {
			names.ShortNames = req.ShortNames
		}
	}
	if err := checkName(req.Kind, acc.Kind, kinds); err != nil {
		conflict("KindConflict", err)
	} else {
		names.Kind = req.Kind
	}
	if err := checkName(req.ListKind, acc.ListKind, kinds); err != nil {
		conflict("ListKindConflict", err)
	} else {
		names.ListKind = req.ListKind
	}
	names.Categories = req.Categories
	if cond.Status == apiextensionsv1.ConditionUnknown {
		cond.Status, cond.Reason, cond.Message = apiextensionsv1.ConditionTrue, "NoConflicts", "no conflicts found"
	}
	out := crd.DeepCopy()
	out.Status.AcceptedNames = names
	apihelpers.SetCRDCondition(out, cond)
	est := apihelpers.FindCRDCondition(out, apiextensionsv1.Established)
	switch {
	case cond.Status == apiextensionsv1.ConditionTrue && (est == nil || est.Status != apiextensionsv1.ConditionTrue):
		apihelpers.SetCRDCondition(out, apiextensionsv1.CustomResourceDefinitionCondition{
			Type: apiextensionsv1.Established, Status: apiextensionsv1.ConditionTrue,
			Reason: "InitialNamesAccepted", Message: "the initial names have been accepted",
		})
	case est == nil:
		apihelpers.SetCRDCondition(out, apiextensionsv1.CustomResourceDefinitionCondition{
			Type: apiextensionsv1.Established, Status: apiextensionsv1.ConditionFalse,
			Reason: "NotAccepted", Message: "not all names are accepted",
		})
	}
	return &out.Status, nil
}

func checkName(requested, accepted string, inUse map[string]bool) error {
	if requested == accepted {
		return nil
	}
	if inUse[requested] {
		return fmt.Errorf("%q is already in use", requested)
	}
	return nil
}

// namesInUse lists the resource names and kinds of the CRD's group that
// other CRDs (their accepted names) and built-in resources hold.
func (c *Controller) namesInUse(crd *apiextensionsv1.CustomResourceDefinition) (map[string]bool, map[string]bool, error) {
	resources, kinds := map[string]bool{}, map[string]bool{}
	all, err := c.lister.List(labels.Everything())
	if err != nil {
		return nil, nil, err
	}
	for _, o := range all {
		if o.Spec.Group != crd.Spec.Group || o.Name == crd.Name {
			continue
		}
		n := o.Status.AcceptedNames
		resources[n.Plural] = true
		resources[n.Singular] = true
		for _, s := range n.ShortNames {
			resources[s] = true
		}
		kinds[n.Kind] = true
		kinds[n.ListKind] = true
	}
	for _, r := range c.reg.All() {
		if r.Group != crd.Spec.Group || r.CRD != nil {
			continue
		}
		resources[r.Plural] = true
		resources[r.Singular] = true
		for _, s := range r.ShortNames {
			resources[s] = true
		}
		kinds[r.Kind] = true
		kinds[r.ListKind] = true
	}
	delete(resources, "")
	delete(kinds, "")
	return resources, kinds, nil
}

// register serves the CRD's served versions and drops versions it no
// longer serves.
func (c *Controller) register(crd *apiextensionsv1.CustomResourceDefinition) {
	c.mu.Lock()
	defer c.mu.Unlock()
	res := resourcesFor(crd)
	now := map[schema.GroupVersionResource]bool{}
	var gvrs []schema.GroupVersionResource
	for _, r := range res {
		if cur, ok := c.reg.Get(r.Group, r.Version, r.Plural); ok && cur.CRD == nil {
			// Never shadow a built-in resource.
			continue
		}
		c.reg.Add(r)
		now[r.GVR()] = true
		gvrs = append(gvrs, r.GVR())
	}
	for _, old := range c.served[crd.Name] {
		if !now[old] {
			c.reg.Remove(old)
		}
	}
	sort.Slice(gvrs, func(i, j int) bool { return gvrs[i].String() < gvrs[j].String() })
	c.served[crd.Name] = gvrs
}

// unregister stops serving every version of a CRD.
func (c *Controller) unregister(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, gvr := range c.served[name] {
		c.reg.Remove(gvr)
	}
	delete(c.served, name)
}

func (c *Controller) servedGVR(name string) (schema.GroupVersionResource, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	gvrs := c.served[name]
	if len(gvrs) == 0 {
		return schema.GroupVersionResource{}, false
	}
	return gvrs[0], true
}

// finalize deletes a terminating CRD's custom resources through the API,
// then stops serving them and removes the cleanup finalizer.
func (c *Controller) finalize(ctx context.Context, crd *apiextensionsv1.CustomResourceDefinition) error {
	if !apihelpers.CRDHasFinalizer(crd, CleanupFinalizer) {
		return nil
	}
	if apihelpers.IsCRDConditionTrue(crd, apiextensionsv1.Established) {
		// Keep serving (reads and deletes) with the terminating
		// definition, so creates are refused.
		c.register(crd)
	}
	if gvr, ok := c.servedGVR(crd.Name); ok {
		ri := c.dyn.Resource(gvr)
		list, err := ri.List(ctx, metav1.ListOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("list %s: %w", gvr, err)
		}
		if list != nil && len(list.Items) > 0 {
			for _, it := range list.Items {
				var err error
				if ns := it.GetNamespace(); ns != "" {
					err = ri.Namespace(ns).Delete(ctx, it.GetName(), metav1.DeleteOptions{})
				} else {
					err = ri.Delete(ctx, it.GetName(), metav1.DeleteOptions{})
				}
				if err != nil && !apierrors.IsNotFound(err) {
					return fmt.Errorf("delete %s %s/%s: %w", gvr, it.GetNamespace(), it.GetName(), err)
				}
			}
			return errPending
		}
	}
	c.unregister(crd.Name)
	apihelpers.CRDRemoveFinalizer(crd, CleanupFinalizer)
	if _, err := c.client.ApiextensionsV1().CustomResourceDefinitions().Update(ctx, crd, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("remove finalizer of %s: %w", crd.Name, err)
	}
	c.log.Info("custom resource definition removed", "crd", crd.Name)
	return nil
}
