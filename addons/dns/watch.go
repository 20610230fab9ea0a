package dns

import (
	"context"
	"fmt"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	toolscache "k8s.io/client-go/tools/cache"
)

// watcher feeds the table from Service, EndpointSlice and Namespace
// informers. Event handlers only mark keys dirty; one worker rebuilds the
// dirty services and publishes one snapshot per batch, so a burst of
// events (the initial list of 10,000 services) costs one swap, not 10,000.
type watcher struct {
	t        *table
	factory  informers.SharedInformerFactory
	services corelisters.ServiceLister
	slices   discoverylisters.EndpointSliceLister
	nsLister corelisters.NamespaceLister

	mu      sync.Mutex
	dirty   map[string]bool // "<ns>/<name>" as in the API (not lower-cased)
	nsDirty bool
	kick    chan struct{}
	ready   chan struct{}
}

// slim drops what the record table never reads from the cached objects
// (managed fields, annotations, labels of Services and Namespaces; status),
// so the informer caches of 10,000 services stay small.
func slim(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Service:
		o.ManagedFields, o.Annotations, o.Labels = nil, nil, nil
		o.Spec.Selector = nil
		o.Status = corev1.ServiceStatus{}
	case *discoveryv1.EndpointSlice:
		o.ManagedFields, o.Annotations = nil, nil
		o.OwnerReferences = nil
		for i := range o.Endpoints {
			o.Endpoints[i].TargetRef = nil
			o.Endpoints[i].Hints = nil
			o.Endpoints[i].DeprecatedTopology = nil
		}
	case *corev1.Namespace:
		o.ManagedFields, o.Annotations, o.Labels = nil, nil, nil
		o.Spec, o.Status = corev1.NamespaceSpec{}, corev1.NamespaceStatus{}
	}
	return obj, nil
}

func newWatcher(cs kubernetes.Interface, t *table) (*watcher, error) {
	f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTransform(slim))
	w := &watcher{
		t:        t,
		factory:  f,
		services: f.Core().V1().Services().Lister(),
		slices:   f.Discovery().V1().EndpointSlices().Lister(),
		nsLister: f.Core().V1().Namespaces().Lister(),
		dirty:    map[string]bool{},
		nsDirty:  true,
		kick:     make(chan struct{}, 1),
		ready:    make(chan struct{}),
	}
	svcKey := func(obj any) {
		if k, err := toolscache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			w.mark(k)
		}
	}
	sliceKey := func(obj any) {
		if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		sl, ok := obj.(*discoveryv1.EndpointSlice)
		if !ok {
			return
		}
		if name := sl.Labels[discoveryv1.LabelServiceName]; name != "" {
			w.mark(sl.Namespace + "/" + name)
		}
	}
	nsKey := func(any) {
		w.mu.Lock()
		w.nsDirty = true
		w.mu.Unlock()
		w.poke()
	}
	handlers := []struct {
		inf toolscache.SharedIndexInformer
		fn  func(any)
	}{
		{f.Core().V1().Services().Informer(), svcKey},
		{f.Discovery().V1().EndpointSlices().Informer(), sliceKey},
		{f.Core().V1().Namespaces().Informer(), nsKey},
	}
	for _, h := range handlers {
		fn := h.fn
		if _, err := h.inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    fn,
			UpdateFunc: func(_, n any) { fn(n) },
			DeleteFunc: fn,
		}); err != nil {
			return nil, fmt.Errorf("add event handler: %w", err)
		}
	}
	return w, nil
}

func (w *watcher) mark(key string) {
	w.mu.Lock()
	w.dirty[key] = true
	w.mu.Unlock()
	w.poke()
}

func (w *watcher) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// run starts the informers and publishes snapshots until ctx ends.
func (w *watcher) run(ctx context.Context) error {
	w.factory.Start(ctx.Done())
	defer w.factory.Shutdown()
	for typ, ok := range w.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("cache sync of %v: %w", typ, ctx.Err())
		}
	}
	w.flush()
	close(w.ready)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.kick:
			w.flush()
		}
	}
}

// flush rebuilds every dirty service and publishes one snapshot.
func (w *watcher) flush() {
	w.mu.Lock()
	dirty, nsDirty := w.dirty, w.nsDirty
	w.dirty, w.nsDirty = map[string]bool{}, false
	w.mu.Unlock()
	if len(dirty) == 0 && !nsDirty {
		return
	}
	updates := make(map[string]*service, len(dirty))
	for key := range dirty {
		ns, name, _ := strings.Cut(key, "/")
		lkey := strings.ToLower(key)
		svc, err := w.services.Services(ns).Get(name)
		if err != nil {
			updates[lkey] = nil
			continue
		}
		var slices []*discoveryv1.EndpointSlice
		if svc.Spec.ClusterIP == corev1.ClusterIPNone {
			sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: name})
			slices, _ = w.slices.EndpointSlices(ns).List(sel)
		}
		updates[lkey] = buildService(svc, slices)
	}
	var nss map[string]bool
	if nsDirty {
		list, _ := w.nsLister.List(labels.Everything())
		nss = make(map[string]bool, len(list))
		for _, n := range list {
			nss[strings.ToLower(n.Name)] = true
		}
	}
	w.t.apply(updates, nss)
}
