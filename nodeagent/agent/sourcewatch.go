package agent

import (
	"context"
	"log/slog"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// sourceWatcher watches, one object each, the ConfigMaps and Secrets the
// node's pods mount as volumes (directly or through projected volumes),
// and requeues those pods when one changes, appears or goes. The pod's next
// sync rewrites the volume, so an update reaches the files in about a
// second rather than at the next resync: upstream's Watch change-detection
// strategy. Each watch is a list+watch with a metadata.name field
// selector, which the node authorizer allows for objects the node's pods
// reference. The resync stays as the safety net.
type sourceWatcher struct {
	client  kubernetes.Interface
	requeue func(types.UID)
	log     *slog.Logger
	ctx     context.Context

	mu      sync.Mutex
	byPod   map[types.UID][]sourceKey
	watches map[sourceKey]*sourceWatch
}

// sourceKey names one watched object.
type sourceKey struct {
	secret    bool
	namespace string
	name      string
}

// sourceWatch is one object's watch and the pods that use the object.
type sourceWatch struct {
	pods   map[types.UID]struct{}
	cancel context.CancelFunc
}

func newSourceWatcher(ctx context.Context, client kubernetes.Interface, requeue func(types.UID), log *slog.Logger) *sourceWatcher {
	return &sourceWatcher{
		client: client, requeue: requeue, log: log, ctx: ctx,
		byPod: map[types.UID][]sourceKey{}, watches: map[sourceKey]*sourceWatch{},
	}
}

// volumeSources lists the ConfigMaps and Secrets pod's volumes read.
func volumeSources(pod *corev1.Pod) []sourceKey {
	var out []sourceKey
	seen := map[sourceKey]bool{}
	add := func(secret bool, name string) {
		k := sourceKey{secret: secret, namespace: pod.Namespace, name: name}
		if name != "" && !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.ConfigMap != nil:
			add(false, v.ConfigMap.Name)
		case v.Secret != nil:
			add(true, v.Secret.SecretName)
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				if s.ConfigMap != nil {
					add(false, s.ConfigMap.Name)
				}
				if s.Secret != nil {
					add(true, s.Secret.Name)
				}
			}
		}
	}
	return out
}

// track makes the watched set for pod's UID the sources pod uses now;
// a nil pod (or one that no longer runs) releases them. Watches no pod
// uses any more stop.
func (w *sourceWatcher) track(uid types.UID, pod *corev1.Pod) {
	var keys []sourceKey
	if pod != nil {
		keys = volumeSources(pod)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	old := w.byPod[uid]
	if len(keys) == 0 {
		delete(w.byPod, uid)
	} else {
		w.byPod[uid] = keys
	}
	for _, k := range keys {
		sw := w.watches[k]
		if sw == nil {
			sw = w.start(k)
			w.watches[k] = sw
		}
		sw.pods[uid] = struct{}{}
	}
	for _, k := range old {
		if containsKey(keys, k) {
			continue
		}
		if sw := w.watches[k]; sw != nil {
			delete(sw.pods, uid)
			if len(sw.pods) == 0 {
				sw.cancel()
				delete(w.watches, k)
			}
		}
	}
}

func containsKey(keys []sourceKey, k sourceKey) bool {
	for _, x := range keys {
		if x == k {
			return true
		}
	}
	return false
}

// start runs k's watch until it is cancelled (w.mu held).
func (w *sourceWatcher) start(k sourceKey) *sourceWatch {
	ctx, cancel := context.WithCancel(w.ctx)
	sw := &sourceWatch{pods: map[types.UID]struct{}{}, cancel: cancel}
	resource, obj := "configmaps", runtime.Object(&corev1.ConfigMap{})
	if k.secret {
		resource, obj = "secrets", &corev1.Secret{}
	}
	selector := fields.OneTermEqualSelector("metadata.name", k.name).String()
	lw := cache.NewFilteredListWatchFromClient(w.client.CoreV1().RESTClient(), resource, k.namespace, func(o *metav1.ListOptions) {
		o.FieldSelector = selector
	})
	changed := func() {
		w.mu.Lock()
		uids := make([]types.UID, 0, len(sw.pods))
		for uid := range sw.pods {
			uids = append(uids, uid)
		}
		w.mu.Unlock()
		for _, uid := range uids {
			w.requeue(uid)
		}
	}
	_, ctrl := cache.NewInformerWithOptions(cache.InformerOptions{
		ListerWatcher: lw,
		ObjectType:    obj,
		Handler: cache.ResourceEventHandlerDetailedFuncs{
			// The first list is what the pod's sync just read.
			AddFunc: func(_ any, initial bool) {
				if !initial {
					changed()
				}
			},
			UpdateFunc: func(_, _ any) { changed() },
			DeleteFunc: func(any) { changed() },
		},
	})
	go ctrl.RunWithContext(ctx)
	w.log.Debug("watching a volume source", "resource", resource, "namespace", k.namespace, "name", k.name)
	return sw
}

// count is how many objects are watched (tests).
func (w *sourceWatcher) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.watches)
}
