package backend

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// metadataOnlyKinds are kinds whose shared informer lists and watches only
// object metadata (PartialObjectMetadata), never their content: the
// backend's identity may list them, but their values (a Secret's data) are
// read only with a user's own token when the user opens one object
// (GET /api/object). The value is the kind the cached rows carry.
var metadataOnlyKinds = map[schema.GroupResource]string{
	{Group: "", Resource: "secrets"}: "Secret",
}

// lastApplied is kubectl's client-side apply annotation: it holds a copy
// of the whole object (a Secret's data included), so metadata-only caches
// drop it.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// sharedCache holds one informer (one list+watch) per resource kind,
// however many browsers subscribe to it. Informers start on the first
// subscription and stop idleTimeout after the last one ends.
type sharedCache struct {
	client dynamic.Interface
	meta   metadata.Interface
	// typed is a protobuf client for the kinds cached as rows built from
	// typed objects (pods, podrow.go); nil: every kind is read with client.
	typed       kubernetes.Interface
	intern      *interner
	log         *slog.Logger
	idleTimeout time.Duration

	mu     sync.Mutex
	kinds  map[schema.GroupVersionResource]*kindCache
	starts atomic.Int64
}

// kindCache is one resource kind's informer and its listeners.
type kindCache struct {
	gvr      schema.GroupVersionResource
	informer cache.SharedIndexInformer
	// metadataOnly: the cache holds only the objects' metadata.
	metadataOnly bool
	cancel       context.CancelFunc
	seq          atomic.Uint64

	mu        sync.Mutex
	refs      int
	idle      *time.Timer
	listeners map[chan struct{}]struct{}
}

func newSharedCache(client dynamic.Interface, meta metadata.Interface, typed kubernetes.Interface, idle time.Duration, log *slog.Logger) *sharedCache {
	if idle <= 0 {
		idle = time.Minute
	}
	return &sharedCache{client: client, meta: meta, typed: typed, intern: newInterner(), log: log, idleTimeout: idle,
		kinds: map[schema.GroupVersionResource]*kindCache{}}
}

// cacheClients builds the shared cache's clients for cfg (the backend's
// identity, or a member cluster's credentials): dynamic (JSON), metadata,
// and typed with protobuf for the kinds cached as rows (podrow.go).
func cacheClients(cfg *rest.Config) (dynamic.Interface, metadata.Interface, kubernetes.Interface, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("cache client: %w", err)
	}
	md, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("metadata cache client: %w", err)
	}
	pc := rest.CopyConfig(cfg)
	pc.ContentType = "application/vnd.kubernetes.protobuf"
	pc.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	typed, err := kubernetes.NewForConfig(pc)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("protobuf cache client: %w", err)
	}
	return dyn, md, typed, nil
}

// stripManagedFields keeps cached objects small: managed fields and
// kubectl's last-applied copy of the object are never shown in tables
// and are most of a typical object's bytes (the detail page reads the
// whole object with the user's token).
func stripManagedFields(obj any) (any, error) {
	if u, ok := obj.(*unstructured.Unstructured); ok {
		u.SetManagedFields(nil)
		stripLastApplied(u)
	}
	return obj, nil
}

// metadataRow turns a PartialObjectMetadata into the row the cache keeps:
// apiVersion, kind and metadata (without managed fields and kubectl's
// last-applied copy of the object), so queries and the browser see the
// same shape as for other kinds, minus the content.
func metadataRow(gvr schema.GroupVersionResource, kind string) cache.TransformFunc {
	return func(obj any) (any, error) {
		var om *metav1.ObjectMeta
		switch o := obj.(type) {
		case *metav1.PartialObjectMetadata:
			om = o.ObjectMeta.DeepCopy()
		case *unstructured.Unstructured:
			// Already a row (transforms may run twice).
			o.SetManagedFields(nil)
			stripLastApplied(o)
			return o, nil
		default:
			return obj, nil
		}
		om.ManagedFields = nil
		delete(om.Annotations, lastApplied)
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(om)
		if err != nil {
			return nil, fmt.Errorf("%s metadata: %w", gvr.Resource, err)
		}
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": gvr.GroupVersion().String(),
			"kind":       kind,
			"metadata":   m,
		}}, nil
	}
}

func stripLastApplied(u *unstructured.Unstructured) {
	if a := u.GetAnnotations(); a != nil {
		if _, ok := a[lastApplied]; ok {
			delete(a, lastApplied)
			u.SetAnnotations(a)
		}
	}
}

// acquire returns the kind's cache, starting its informer if needed, and
// registers notify, which gets a (coalesced) signal on every change. The
// caller must call release with the same channel.
func (c *sharedCache) acquire(ctx context.Context, gvr schema.GroupVersionResource, notify chan struct{}) (*kindCache, error) {
	k := c.ref(gvr, notify)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if !cache.WaitForCacheSync(sctx.Done(), k.informer.HasSynced) {
		c.release(k, notify)
		return nil, fmt.Errorf("%s: cache did not sync: %w", gvr.Resource, context.Cause(sctx))
	}
	return k, nil
}

// pin starts the kind's informer if needed and keeps it running until
// stop, without waiting for its list: the backend warms the kinds the
// dashboard opens first (Options.Warm), so the first browser finds them
// listed. It returns the kind's cache.
func (c *sharedCache) pin(gvr schema.GroupVersionResource) *kindCache {
	return c.ref(gvr, nil)
}

// ref returns the kind's cache with one more reference, starting its
// informer if needed; notify (when not nil) is registered as a listener.
func (c *sharedCache) ref(gvr schema.GroupVersionResource, notify chan struct{}) *kindCache {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.kinds[gvr]
	if k == nil {
		k = c.newKind(gvr)
		ictx, cancel := context.WithCancel(context.Background())
		k.cancel = cancel
		c.kinds[gvr] = k
		c.starts.Add(1)
		c.log.Info("dashboard watch started", "resource", gvr.String())
		go k.informer.RunWithContext(ictx)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.refs++
	if k.idle != nil {
		k.idle.Stop()
		k.idle = nil
	}
	if notify != nil {
		k.listeners[notify] = struct{}{}
	}
	return k
}

// newKind builds a kind's informer (not started).
func (c *sharedCache) newKind(gvr schema.GroupVersionResource) *kindCache {
	indexers := cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}
	var inf cache.SharedIndexInformer
	kind, metaOnly := metadataOnlyKinds[gvr.GroupResource()]
	switch {
	case metaOnly:
		inf = metadatainformer.NewFilteredMetadataInformer(c.meta, gvr, "", 0, indexers, nil).Informer()
		_ = inf.SetTransform(metadataRow(gvr, kind))
	case gvr == podsGVR && c.typed != nil:
		inf = coreinformers.NewFilteredPodInformer(c.typed, "", 0, indexers, nil)
		_ = inf.SetTransform(podRow(c.intern))
	default:
		inf = dynamicinformer.NewFilteredDynamicInformer(c.client, gvr, "", 0, indexers, nil).Informer()
		_ = inf.SetTransform(stripManagedFields)
	}
	k := &kindCache{gvr: gvr, informer: inf, metadataOnly: metaOnly, listeners: map[chan struct{}]struct{}{}}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { k.changed() },
		UpdateFunc: func(_, _ any) { k.changed() },
		DeleteFunc: func(any) { k.changed() },
	})
	return k
}

// release drops a listener; the informer stops after the idle timeout.
func (c *sharedCache) release(k *kindCache, notify chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.listeners, notify)
	k.refs--
	if k.refs > 0 {
		return
	}
	k.idle = time.AfterFunc(c.idleTimeout, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		k.mu.Lock()
		defer k.mu.Unlock()
		if k.refs > 0 || c.kinds[k.gvr] != k {
			return
		}
		delete(c.kinds, k.gvr)
		k.cancel()
		c.log.Info("dashboard watch stopped", "resource", k.gvr.String())
	})
}

// stop ends every informer.
func (c *sharedCache) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for gvr, k := range c.kinds {
		k.cancel()
		delete(c.kinds, gvr)
	}
}

// watches reports the number of running informers and how many were
// ever started.
func (c *sharedCache) watches() (running int, started int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.kinds), c.starts.Load()
}

func (k *kindCache) changed() {
	k.seq.Add(1)
	k.mu.Lock()
	defer k.mu.Unlock()
	for ch := range k.listeners {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// list returns the cached objects of namespace ("" = all). The objects
// are shared with the cache and must not be modified.
func (k *kindCache) list(namespace string) []*unstructured.Unstructured {
	var items []any
	if namespace == "" {
		items = k.informer.GetStore().List()
	} else {
		items, _ = k.informer.GetIndexer().ByIndex(cache.NamespaceIndex, namespace)
	}
	out := make([]*unstructured.Unstructured, 0, len(items))
	for _, it := range items {
		if u, ok := it.(*unstructured.Unstructured); ok {
			out = append(out, u)
		}
	}
	return out
}
