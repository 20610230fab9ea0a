package podutil

import (
	"fmt"

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
func AddControllerIndex(inf cache.SharedIndexInformer) error {
	if _, ok := inf.GetIndexer().GetIndexers()[ControllerIndex]; ok {
		return nil
	}
	if err := inf.AddIndexers(cache.Indexers{ControllerIndex: controllerIndexFunc}); err != nil {
		if _, ok := inf.GetIndexer().GetIndexers()[ControllerIndex]; ok {
			return nil // added meanwhile by another controller
		}
		return fmt.Errorf("pod controller index: %w", err)
	}
	return nil
}

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
