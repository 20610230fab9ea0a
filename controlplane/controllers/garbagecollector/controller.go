// Package garbagecollector is the garbage collector: it deletes objects
// whose owners are gone and carries out the "orphan" and
// "foregroundDeletion" finalizers the API server adds for the Orphan and
// Foreground propagation policies. See README.md.
package garbagecollector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Name is the controller's name (and its --disable name).
const Name = "garbage-collector"

// Finalizers the API server adds for deletion propagation.
const (
	finalizerOrphan     = metav1.FinalizerOrphanDependents
	finalizerForeground = metav1.FinalizerDeleteDependents
)

// ignored resources are never collected nor watched, as upstream.
var ignored = map[schema.GroupResource]bool{
	{Group: "", Resource: "events"}:              true,
	{Group: "events.k8s.io", Resource: "events"}: true,
}

// Config is what the collector needs.
type Config struct {
	Discovery discovery.DiscoveryInterface
	Metadata  metadata.Interface
	Logger    *slog.Logger
	// Rediscover is how often new resources (CRDs) are picked up; default 30s.
	Rediscover time.Duration
}

// Controller is the garbage collector.
type Controller struct {
	cfg   Config
	log   *slog.Logger
	graph *graph
	queue workqueue.TypedRateLimitingInterface[string]

	mu        sync.Mutex
	informers map[schema.GroupVersionResource]*watched
	kinds     map[schema.GroupVersionKind]resourceInfo
}

type watched struct {
	inf    cache.SharedIndexInformer
	cancel context.CancelFunc
}

type resourceInfo struct {
	gvr        schema.GroupVersionResource
	namespaced bool
}

var _ controllers.Controller = (*Controller)(nil)

// New returns the collector.
func New(cfg Config) *Controller {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Rediscover <= 0 {
		cfg.Rediscover = 30 * time.Second
	}
	return &Controller{
		cfg:       cfg,
		log:       cfg.Logger.With("component", Name),
		graph:     newGraph(),
		queue:     controllers.NewQueue(Name),
		informers: map[schema.GroupVersionResource]*watched{},
		kinds:     map[schema.GroupVersionKind]resourceInfo{},
	}
}

// Name implements controllers.Controller.
func (c *Controller) Name() string { return Name }

// Run implements controllers.Controller.
func (c *Controller) Run(ctx context.Context, workers int) error {
	defer c.stopInformers()
	if err := c.sync(ctx); err != nil {
		c.log.Warn("resource discovery incomplete", "err", err)
	}
	if !controllers.WaitForSync(ctx, c.synced()...) {
		return ctx.Err()
	}
	go func() {
		t := time.NewTicker(c.cfg.Rediscover)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := c.sync(ctx); err != nil && ctx.Err() == nil {
					c.log.Warn("resource discovery incomplete", "err", err)
				}
			}
		}
	}()
	controllers.RunWorkers(ctx, c.queue, workers, c.log, c.Reconcile)
	return nil
}

func (c *Controller) synced() []cache.InformerSynced {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []cache.InformerSynced
	for _, w := range c.informers {
		out = append(out, w.inf.HasSynced)
	}
	return out
}

func (c *Controller) stopInformers() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.informers {
		w.cancel()
	}
}

// sync discovers the deletable, watchable resources and starts or stops
// their metadata informers.
func (c *Controller) sync(ctx context.Context) error {
	lists, derr := c.cfg.Discovery.ServerPreferredResources()
	if derr != nil && !discovery.IsGroupDiscoveryFailedError(derr) {
		return fmt.Errorf("discover resources: %w", derr)
	}
	kinds := map[schema.GroupVersionKind]resourceInfo{}
	want := map[schema.GroupVersionResource]bool{}
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") {
				continue
			}
			gvr := gv.WithResource(r.Name)
			kinds[gv.WithKind(r.Kind)] = resourceInfo{gvr: gvr, namespaced: r.Namespaced}
			if ignored[gvr.GroupResource()] || !sets.New(r.Verbs...).HasAll("delete", "list", "watch") {
				continue
			}
			want[gvr] = true
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Owner references may name any served version of a kind; map them
	// all to the preferred resource.
	for gvk, ri := range c.kinds {
		if _, ok := kinds[gvk]; !ok && derr != nil {
			kinds[gvk] = ri // keep what a failed group discovery hid
		}
	}
	c.kinds = kinds
	for gvr, w := range c.informers {
		if !want[gvr] && derr == nil {
			w.cancel()
			delete(c.informers, gvr)
			c.graph.dropResource(gvr)
			c.log.Info("stopped watching resource", "resource", gvr.String())
		}
	}
	for gvr := range want {
		if _, ok := c.informers[gvr]; ok {
			continue
		}
		inf := metadatainformer.NewFilteredMetadataInformer(c.cfg.Metadata, gvr, metav1.NamespaceAll, 10*time.Minute, cache.Indexers{}, nil).Informer()
		if _, err := inf.AddEventHandler(c.handler(gvr)); err != nil {
			return err
		}
		ictx, cancel := context.WithCancel(ctx)
		c.informers[gvr] = &watched{inf: inf, cancel: cancel}
		go inf.RunWithContext(ictx)
	}
	return nil
}

func (c *Controller) handler(gvr schema.GroupVersionResource) cache.ResourceEventHandlerFuncs {
	toNode := func(obj any) *node {
		m, ok := obj.(*metav1.PartialObjectMetadata)
		if !ok {
			return nil
		}
		return &node{
			gvr: gvr, namespace: m.Namespace, name: m.Name, uid: m.UID,
			owners:     append([]metav1.OwnerReference(nil), m.OwnerReferences...),
			finalizers: append([]string(nil), m.Finalizers...),
			deleting:   m.DeletionTimestamp != nil,
		}
	}
	upsert := func(obj any) {
		n := toNode(obj)
		if n == nil {
			return
		}
		old := c.graph.upsert(n)
		if len(n.owners) > 0 || (n.deleting && (n.hasFinalizer(finalizerOrphan) || n.hasFinalizer(finalizerForeground))) {
			c.queue.Add(string(n.uid))
		}
		if old != nil {
			// Owners this object no longer names may be waiting for it.
			for _, o := range old.owners {
				c.queue.Add(string(o.UID))
			}
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    upsert,
		UpdateFunc: func(_, obj any) { upsert(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			m, ok := obj.(*metav1.PartialObjectMetadata)
			if !ok {
				return
			}
			n := c.graph.remove(m.UID)
			// Its dependents may now be orphans; its owners may be waiting
			// for it to go (foreground deletion).
			for _, d := range c.graph.dependentsOf(m.UID) {
				c.queue.Add(string(d.uid))
			}
			if n != nil {
				for _, o := range n.owners {
					c.queue.Add(string(o.UID))
				}
			}
		},
	}
}

// Reconcile handles one object by UID.
func (c *Controller) Reconcile(ctx context.Context, key string) (controllers.Result, error) {
	n := c.graph.get(types.UID(key))
	if n == nil {
		return controllers.Result{}, nil
	}
	if n.deleting {
		switch {
		case n.hasFinalizer(finalizerOrphan):
			return controllers.Result{}, c.orphanDependents(ctx, n)
		case n.hasFinalizer(finalizerForeground):
			return c.deleteDependents(ctx, n)
		}
		return controllers.Result{}, nil
	}
	if len(n.owners) == 0 {
		return controllers.Result{}, nil
	}
	return controllers.Result{}, c.checkOwners(ctx, n)
}

// ownerState is what an owner reference points at.
type ownerState int

const (
	ownerSolid   ownerState = iota // exists
	ownerAbsent                    // gone (verified against the API)
	ownerWaiting                   // being deleted in the foreground
)

func (c *Controller) resourceFor(ref metav1.OwnerReference) (resourceInfo, error) {
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return resourceInfo{}, fmt.Errorf("owner reference apiVersion %q: %w", ref.APIVersion, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ri, ok := c.kinds[gv.WithKind(ref.Kind)]
	if !ok {
		// Same group and kind at another version.
		for gvk, r := range c.kinds {
			if gvk.Group == gv.Group && gvk.Kind == ref.Kind {
				return r, nil
			}
		}
		return resourceInfo{}, fmt.Errorf("owner kind %s is not served", gv.WithKind(ref.Kind))
	}
	return ri, nil
}

// ownerState classifies ref for dependent n: from the graph when the owner
// is known there, else by reading it from the API by name and UID.
func (c *Controller) ownerState(ctx context.Context, n *node, ref metav1.OwnerReference) (ownerState, error) {
	if o := c.graph.get(ref.UID); o != nil {
		if o.deleting && o.hasFinalizer(finalizerForeground) {
			return ownerWaiting, nil
		}
		return ownerSolid, nil
	}
	ri, err := c.resourceFor(ref)
	if err != nil {
		return 0, err
	}
	ns := ""
	if ri.namespaced {
		ns = n.namespace
	}
	m, err := c.cfg.Metadata.Resource(ri.gvr).Namespace(ns).Get(ctx, ref.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return ownerAbsent, nil
	}
	if err != nil {
		return 0, err
	}
	if m.UID != ref.UID {
		return ownerAbsent, nil
	}
	if m.DeletionTimestamp != nil && hasString(m.Finalizers, finalizerForeground) {
		return ownerWaiting, nil
	}
	return ownerSolid, nil
}

// checkOwners deletes n when none of its owners remains, or drops the
// references to gone owners when some remain.
func (c *Controller) checkOwners(ctx context.Context, n *node) error {
	var solid int
	var gone []types.UID
	waiting := false
	for _, ref := range n.owners {
		st, err := c.ownerState(ctx, n, ref)
		if err != nil {
			return err
		}
		switch st {
		case ownerSolid:
			solid++
		case ownerAbsent:
			gone = append(gone, ref.UID)
		case ownerWaiting:
			waiting = true
			gone = append(gone, ref.UID)
		}
	}
	if solid > 0 {
		if len(gone) == 0 {
			return nil
		}
		return c.removeOwnerRefs(ctx, n, gone)
	}
	policy := metav1.DeletePropagationBackground
	switch {
	case n.hasFinalizer(finalizerOrphan):
		policy = metav1.DeletePropagationOrphan
	case n.hasFinalizer(finalizerForeground), waiting && len(c.graph.dependentsOf(n.uid)) > 0:
		policy = metav1.DeletePropagationForeground
	}
	c.log.Info("deleting object whose owners are gone", "resource", n.gvr.String(), "namespace", n.namespace, "name", n.name, "propagation", policy)
	return c.deleteNode(ctx, n, policy)
}

func (c *Controller) deleteNode(ctx context.Context, n *node, policy metav1.DeletionPropagation) error {
	uid := n.uid
	err := c.cfg.Metadata.Resource(n.gvr).Namespace(n.namespace).Delete(ctx, n.name, metav1.DeleteOptions{
		Preconditions:     &metav1.Preconditions{UID: &uid},
		PropagationPolicy: &policy,
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		// Gone, or replaced by a new object of the same name.
		return nil
	}
	return err
}

// orphanDependents removes owner n from its dependents' ownerReferences,
// then its "orphan" finalizer.
func (c *Controller) orphanDependents(ctx context.Context, n *node) error {
	var errs []error
	for _, d := range c.graph.dependentsOf(n.uid) {
		if err := c.removeOwnerRefs(ctx, d, []types.UID{n.uid}); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return c.removeFinalizer(ctx, n, finalizerOrphan)
}

// deleteDependents carries out foreground deletion of n: its dependents
// are deleted, and the finalizer goes once none that blocks it remains.
func (c *Controller) deleteDependents(ctx context.Context, n *node) (controllers.Result, error) {
	blocking := 0
	for _, d := range c.graph.dependentsOf(n.uid) {
		ref, ok := refTo(d, n.uid)
		if !ok {
			continue
		}
		if ref.BlockOwnerDeletion != nil && *ref.BlockOwnerDeletion {
			blocking++
		}
		if d.deleting {
			continue
		}
		policy := metav1.DeletePropagationBackground
		if len(c.graph.dependentsOf(d.uid)) > 0 {
			policy = metav1.DeletePropagationForeground
		}
		if err := c.deleteNode(ctx, d, policy); err != nil {
			return controllers.Result{}, err
		}
	}
	if blocking > 0 {
		// The dependents' delete events bring n back; the requeue is a
		// safety net.
		return controllers.Result{RequeueAfter: 5 * time.Second}, nil
	}
	return controllers.Result{}, c.removeFinalizer(ctx, n, finalizerForeground)
}

func refTo(n *node, owner types.UID) (metav1.OwnerReference, bool) {
	for _, r := range n.owners {
		if r.UID == owner {
			return r, true
		}
	}
	return metav1.OwnerReference{}, false
}

func hasString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// mergePatch sends a JSON merge patch of metadata guarded by the object's
// UID and resourceVersion.
func (c *Controller) mergePatch(ctx context.Context, n *node, meta map[string]any) error {
	body, err := json.Marshal(map[string]any{"metadata": meta})
	if err != nil {
		return err
	}
	_, err = c.cfg.Metadata.Resource(n.gvr).Namespace(n.namespace).Patch(ctx, n.name, types.MergePatchType, body, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// removeOwnerRefs drops the references to owners from n, read fresh from
// the API so that a stale cache never writes back old references.
func (c *Controller) removeOwnerRefs(ctx context.Context, n *node, owners []types.UID) error {
	cur, err := c.cfg.Metadata.Resource(n.gvr).Namespace(n.namespace).Get(ctx, n.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if cur.UID != n.uid {
		return nil
	}
	drop := sets.New(owners...)
	keep := []metav1.OwnerReference{}
	for _, r := range cur.OwnerReferences {
		if !drop.Has(r.UID) {
			keep = append(keep, r)
		}
	}
	if len(keep) == len(cur.OwnerReferences) {
		return nil
	}
	var refs any = keep
	if len(keep) == 0 {
		refs = nil
	}
	return c.mergePatch(ctx, n, map[string]any{"ownerReferences": refs, "uid": cur.UID, "resourceVersion": cur.ResourceVersion})
}

// removeFinalizer removes f from n, guarded by its resourceVersion.
func (c *Controller) removeFinalizer(ctx context.Context, n *node, f string) error {
	cur, err := c.cfg.Metadata.Resource(n.gvr).Namespace(n.namespace).Get(ctx, n.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if cur.UID != n.uid || !hasString(cur.Finalizers, f) {
		return nil
	}
	keep := []string{}
	for _, x := range cur.Finalizers {
		if x != f {
			keep = append(keep, x)
		}
	}
	var fins any = keep
	if len(keep) == 0 {
		fins = nil
	}
	return c.mergePatch(ctx, n, map[string]any{"finalizers": fins, "uid": cur.UID, "resourceVersion": cur.ResourceVersion})
}
