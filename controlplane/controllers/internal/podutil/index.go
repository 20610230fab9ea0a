package podutil

import (
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// ControllerIndex indexes pods by namespace and controller UID
// ("<ns>/<uid>"), orphans under "<ns>/", as upstream's pod controller-UID
// index: a controller's sync reads its own pods and the orphans it may adopt
// instead of walking every pod of the namespace, which made a sync cost
// grow with the pods of all the other controllers.
const ControllerIndex = "skiff.io/controller-uid"

func controllerIndexKey(ns string, uid types.UID) string { return ns + "/" + string(uid) }

func controllerIndexFunc(obj any) ([]string, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return nil, nil
	}
	var uid types.UID
	if ref := metav1.GetControllerOfNoCopy(p); ref != nil {
		uid = ref.UID
	}
	return []string{controllerIndexKey(p.Namespace, uid)}, nil
}

// AddControllerIndex adds ControllerIndex to a pod informer, once however
// many controllers share the informer.
//
// Calls are serialized: client-go's GetIndexers hands out its map
// without a lock, so a check beside another controller's AddIndexers
// would race.
func AddControllerIndex(inf cache.SharedIndexInformer) error {
	addIndexMu.Lock()
	defer addIndexMu.Unlock()
	if _, ok := inf.GetIndexer().GetIndexers()[ControllerIndex]; ok {
		return nil
	}
	if err := inf.AddIndexers(cache.Indexers{ControllerIndex: controllerIndexFunc}); err != nil {
		return fmt.Errorf("pod controller index: %w", err)
	}
	return nil
}

var addIndexMu sync.Mutex

// ControlledPods are the pods of namespace ns whose controller has UID uid
// (uid "": the orphans), from an informer with AddControllerIndex.
func ControlledPods(idx cache.Indexer, ns string, uid types.UID) ([]*corev1.Pod, error) {
	objs, err := idx.ByIndex(ControllerIndex, controllerIndexKey(ns, uid))
	if err != nil {
		return nil, err
	}
	pods := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok {
			pods = append(pods, p)
		}
	}
	return pods, nil
}

// OwnAndOrphans are the pods of namespace ns a controller with UID uid may
// claim: those it controls and the orphans it may adopt, each once, from an
// informer with AddControllerIndex. Pods of other controllers are left out,
// which podutil.Claimer would skip anyway.
func OwnAndOrphans(idx cache.Indexer, ns string, uid types.UID) ([]*corev1.Pod, error) {
	orphans, err := ControlledPods(idx, ns, "")
	if err != nil || uid == "" {
		return orphans, err // no UID: its "own" pods are the orphans
	}
	own, err := ControlledPods(idx, ns, uid)
	if err != nil {
		return nil, err
	}
	return append(own, orphans...), nil
}
