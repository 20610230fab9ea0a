package replicaset

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// kind is what differs between ReplicaSets and ReplicationControllers; the
// controller works on ReplicaSets and RCs are converted on the way in and out.
type kind interface {
	gvk() schema.GroupVersionKind
	informer() cache.SharedIndexInformer
	get(ns, name string) (*appsv1.ReplicaSet, error)
	list(ns string) ([]*appsv1.ReplicaSet, error)
	// fresh reads the object from the API server (for adoption checks).
	fresh(ctx context.Context, ns, name string) (metav1.Object, error)
	updateStatus(ctx context.Context, rs *appsv1.ReplicaSet) error
}

var (
	rsKind = appsv1.SchemeGroupVersion.WithKind("ReplicaSet")
	rcKind = corev1.SchemeGroupVersion.WithKind("ReplicationController")
)

type replicaSets struct {
	client kubernetes.Interface
	inf    cache.SharedIndexInformer
	lister appslisters.ReplicaSetLister
}

func newReplicaSets(c kubernetes.Interface, f informers.SharedInformerFactory) *replicaSets {
	i := f.Apps().V1().ReplicaSets()
	return &replicaSets{client: c, inf: i.Informer(), lister: i.Lister()}
}

func (k *replicaSets) gvk() schema.GroupVersionKind        { return rsKind }
func (k *replicaSets) informer() cache.SharedIndexInformer { return k.inf }
func (k *replicaSets) get(ns, name string) (*appsv1.ReplicaSet, error) {
	return k.lister.ReplicaSets(ns).Get(name)
}
func (k *replicaSets) list(ns string) ([]*appsv1.ReplicaSet, error) {
	return k.lister.ReplicaSets(ns).List(everything)
}
func (k *replicaSets) fresh(ctx context.Context, ns, name string) (metav1.Object, error) {
	return k.client.AppsV1().ReplicaSets(ns).Get(ctx, name, metav1.GetOptions{})
}
func (k *replicaSets) updateStatus(ctx context.Context, rs *appsv1.ReplicaSet) error {
	_, err := k.client.AppsV1().ReplicaSets(rs.Namespace).UpdateStatus(ctx, rs, metav1.UpdateOptions{})
	return err
}

type replicationControllers struct {
	client kubernetes.Interface
	inf    cache.SharedIndexInformer
	lister corelisters.ReplicationControllerLister
}

func newReplicationControllers(c kubernetes.Interface, f informers.SharedInformerFactory) *replicationControllers {
	i := f.Core().V1().ReplicationControllers()
	return &replicationControllers{client: c, inf: i.Informer(), lister: i.Lister()}
}

func (k *replicationControllers) gvk() schema.GroupVersionKind        { return rcKind }
func (k *replicationControllers) informer() cache.SharedIndexInformer { return k.inf }
func (k *replicationControllers) get(ns, name string) (*appsv1.ReplicaSet, error) {
	rc, err := k.lister.ReplicationControllers(ns).Get(name)
	if err != nil {
		return nil, err
	}
	return fromRC(rc), nil
}
func (k *replicationControllers) list(ns string) ([]*appsv1.ReplicaSet, error) {
	rcs, err := k.lister.ReplicationControllers(ns).List(everything)
	if err != nil {
		return nil, err
	}
	out := make([]*appsv1.ReplicaSet, 0, len(rcs))
	for _, rc := range rcs {
		out = append(out, fromRC(rc))
	}
	return out, nil
}
func (k *replicationControllers) fresh(ctx context.Context, ns, name string) (metav1.Object, error) {
	return k.client.CoreV1().ReplicationControllers(ns).Get(ctx, name, metav1.GetOptions{})
}
func (k *replicationControllers) updateStatus(ctx context.Context, rs *appsv1.ReplicaSet) error {
	rc, err := k.lister.ReplicationControllers(rs.Namespace).Get(rs.Name)
	if err != nil {
		return err
	}
	rc = rc.DeepCopy()
	rc.Status = corev1.ReplicationControllerStatus{
		Replicas:             rs.Status.Replicas,
		FullyLabeledReplicas: rs.Status.FullyLabeledReplicas,
		ReadyReplicas:        rs.Status.ReadyReplicas,
		AvailableReplicas:    rs.Status.AvailableReplicas,
		ObservedGeneration:   rs.Status.ObservedGeneration,
	}
	for _, c := range rs.Status.Conditions {
		rc.Status.Conditions = append(rc.Status.Conditions, corev1.ReplicationControllerCondition{
			Type: corev1.ReplicationControllerConditionType(c.Type), Status: c.Status,
			LastTransitionTime: c.LastTransitionTime, Reason: c.Reason, Message: c.Message,
		})
	}
	_, err = k.client.CoreV1().ReplicationControllers(rc.Namespace).UpdateStatus(ctx, rc, metav1.UpdateOptions{})
	return err
}

// fromRC converts an RC to the ReplicaSet the controller works on.
func fromRC(rc *corev1.ReplicationController) *appsv1.ReplicaSet {
	rs := &appsv1.ReplicaSet{
		ObjectMeta: *rc.ObjectMeta.DeepCopy(),
		Spec: appsv1.ReplicaSetSpec{
			Replicas:        rc.Spec.Replicas,
			MinReadySeconds: rc.Spec.MinReadySeconds,
			Selector:        &metav1.LabelSelector{MatchLabels: rc.Spec.Selector},
		},
		Status: appsv1.ReplicaSetStatus{
			Replicas:             rc.Status.Replicas,
			FullyLabeledReplicas: rc.Status.FullyLabeledReplicas,
			ReadyReplicas:        rc.Status.ReadyReplicas,
			AvailableReplicas:    rc.Status.AvailableReplicas,
			ObservedGeneration:   rc.Status.ObservedGeneration,
		},
	}
	if rc.Spec.Template != nil {
		rs.Spec.Template = *rc.Spec.Template.DeepCopy()
	}
	for _, c := range rc.Status.Conditions {
		rs.Status.Conditions = append(rs.Status.Conditions, appsv1.ReplicaSetCondition{
			Type: appsv1.ReplicaSetConditionType(c.Type), Status: c.Status,
			LastTransitionTime: c.LastTransitionTime, Reason: c.Reason, Message: c.Message,
		})
	}
	return rs
}
