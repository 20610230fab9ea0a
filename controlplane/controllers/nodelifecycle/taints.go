package nodelifecycle

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
)

// The NoExecute taints of unhealthy nodes, as upstream.
var (
	UnreachableTaint = corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute}
	NotReadyTaint    = corev1.Taint{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoExecute}
)

// conditionTaints maps node conditions to the NoSchedule taint keys
// upstream's TaintNodesByCondition sets.
var conditionTaints = map[corev1.NodeConditionType]map[corev1.ConditionStatus]string{
	corev1.NodeReady: {
		corev1.ConditionFalse:   corev1.TaintNodeNotReady,
		corev1.ConditionUnknown: corev1.TaintNodeUnreachable,
	},
	corev1.NodeMemoryPressure:     {corev1.ConditionTrue: corev1.TaintNodeMemoryPressure},
	corev1.NodeDiskPressure:       {corev1.ConditionTrue: corev1.TaintNodeDiskPressure},
	corev1.NodeNetworkUnavailable: {corev1.ConditionTrue: corev1.TaintNodeNetworkUnavailable},
	corev1.NodePIDPressure:        {corev1.ConditionTrue: corev1.TaintNodePIDPressure},
}

// noScheduleKeys are the NoSchedule taint keys this controller owns.
var noScheduleKeys = map[string]bool{
	corev1.TaintNodeNotReady: true, corev1.TaintNodeUnreachable: true, corev1.TaintNodeMemoryPressure: true,
	corev1.TaintNodeDiskPressure: true, corev1.TaintNodeNetworkUnavailable: true, corev1.TaintNodePIDPressure: true,
	corev1.TaintNodeUnschedulable: true,
}

// podNodeIndex indexes the shared pod informer by spec.nodeName.
const podNodeIndex = "skiff.io/pod-node-name"

func addPodNodeIndex(inf cache.SharedIndexInformer) error {
	if _, ok := inf.GetIndexer().GetIndexers()[podNodeIndex]; ok {
		return nil
	}
	return inf.AddIndexers(cache.Indexers{podNodeIndex: func(obj any) ([]string, error) {
		if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
			return []string{p.Spec.NodeName}, nil
		}
		return nil, nil
	}})
}

func podsOnNode(idx cache.Indexer, node string) []*corev1.Pod {
	objs, err := idx.ByIndex(podNodeIndex, node)
	if err != nil {
		return nil
	}
	out := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok {
			out = append(out, p)
		}
	}
	return out
}

func hasTaint(taints []corev1.Taint, t corev1.Taint) bool {
	for i := range taints {
		if taints[i].MatchTaint(&t) {
			return true
		}
	}
	return false
}

// noExecuteTaints returns the node's NoExecute taints.
func noExecuteTaints(n *corev1.Node) []corev1.Taint {
	var out []corev1.Taint
	for _, t := range n.Spec.Taints {
		if t.Effect == corev1.TaintEffectNoExecute {
			out = append(out, t)
		}
	}
	return out
}

// swapTaints adds add and removes remove (matched by key and effect) on
// the live node, retrying on conflicts. NoExecute taints get TimeAdded.
func swapTaints(ctx context.Context, c kubernetes.Interface, name string, add, remove []corev1.Taint) error {
	return retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		n, err := c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		var out []corev1.Taint
		changed := false
		for _, t := range n.Spec.Taints {
			if hasTaint(remove, t) {
				changed = true
				continue
			}
			out = append(out, t)
		}
		for _, t := range add {
			if hasTaint(out, t) {
				continue
			}
			if t.Effect == corev1.TaintEffectNoExecute {
				now := metav1.NewTime(time.Now())
				t.TimeAdded = &now
			}
			out = append(out, t)
			changed = true
		}
		if !changed {
			return nil
		}
		upd := n.DeepCopy()
		upd.Spec.Taints = out
		_, err = c.CoreV1().Nodes().Update(ctx, upd, metav1.UpdateOptions{})
		return err
	})
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// tolerates reports whether t tolerates taint, as upstream's
// Toleration.ToleratesTaint (without the numeric comparison operators).
func tolerates(t *corev1.Toleration, taint *corev1.Taint) bool {
	if t.Effect != "" && t.Effect != taint.Effect {
		return false
	}
	if t.Key != "" && t.Key != taint.Key {
		return false
	}
	switch t.Operator {
	case "", corev1.TolerationOpEqual:
		return t.Value == taint.Value
	case corev1.TolerationOpExists:
		return true
	}
	return false
}

// matchingTolerations reports whether every taint is tolerated, and the
// tolerations used.
func matchingTolerations(taints []corev1.Taint, tolerations []corev1.Toleration) (bool, []corev1.Toleration) {
	var used []corev1.Toleration
	for i := range taints {
		ok := false
		for j := range tolerations {
			if tolerates(&tolerations[j], &taints[i]) {
				used = append(used, tolerations[j])
				ok = true
			}
		}
		if !ok {
			return false, nil
		}
	}
	return true, used
}

// minTolerationTime is the shortest tolerationSeconds among used; < 0
// means forever (no toleration has a limit).
func minTolerationTime(used []corev1.Toleration) time.Duration {
	min := time.Duration(-1)
	for _, t := range used {
		if t.TolerationSeconds == nil {
			continue
		}
		d := time.Duration(max(*t.TolerationSeconds, 0)) * time.Second
		if min < 0 || d < min {
			min = d
		}
	}
	return min
}

// zoneKey is upstream's zone key: region and zone labels; "" when neither.
func zoneKey(n *corev1.Node) string {
	region := n.Labels[corev1.LabelTopologyRegion]
	if region == "" {
		region = n.Labels[corev1.LabelFailureDomainBetaRegion]
	}
	zone := n.Labels[corev1.LabelTopologyZone]
	if zone == "" {
		zone = n.Labels[corev1.LabelFailureDomainBetaZone]
	}
	if region == "" && zone == "" {
		return ""
	}
	return fmt.Sprintf("%s:\x00:%s", region, zone)
}
