package disruption

import (
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// DeletionTimeout is how long a pod recorded in status.disruptedPods by an
// eviction is counted as gone before the controller assumes the deletion
// will not happen (upstream's value).
const DeletionTimeout = 2 * time.Minute

// ScaleFinder returns the scale (spec.replicas) of the controller ref
// points to in ns and the UID of the object whose scale it is (a
// Deployment for a ReplicaSet it controls), or found=false.
type ScaleFinder func(ref *metav1.OwnerReference, ns string) (uid types.UID, scale int32, found bool, err error)

// ExpectedScale is the denominator of a percentage budget: the sum of the
// scales of the controllers of pods, each controller counted once. Pods
// without a controller are returned as unmanaged and not counted; a pod
// whose controller is not found is an error.
func ExpectedScale(pods []*corev1.Pod, find ScaleFinder) (expected int32, unmanaged []string, err error) {
	scales := map[types.UID]int32{}
	seenRef := map[types.UID]bool{}
	for _, pod := range pods {
		ref := metav1.GetControllerOf(pod)
		if ref == nil {
			unmanaged = append(unmanaged, pod.Name)
			continue
		}
		if seenRef[ref.UID] {
			continue
		}
		uid, scale, found, err := find(ref, pod.Namespace)
		if err != nil {
			return 0, nil, err
		}
		if !found {
			return 0, nil, fmt.Errorf("found no controllers for pod %q", pod.Name)
		}
		seenRef[ref.UID] = true
		scales[uid] = scale
	}
	for _, s := range scales {
		expected += s
	}
	return expected, unmanaged, nil
}

// ExpectedCounts returns expectedPods and desiredHealthy for pdb over pods,
// as upstream: an integer minAvailable counts the matching pods; a
// percentage minAvailable or any maxUnavailable is taken of the
// controllers' scale, rounding up.
func ExpectedCounts(pdb *policyv1.PodDisruptionBudget, pods []*corev1.Pod, find ScaleFinder) (expected, desiredHealthy int32, unmanaged []string, err error) {
	switch {
	case pdb.Spec.MaxUnavailable != nil:
		expected, unmanaged, err = ExpectedScale(pods, find)
		if err != nil {
			return 0, 0, nil, err
		}
		maxUnavailable, err := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MaxUnavailable, int(expected), true)
		if err != nil {
			return 0, 0, nil, err
		}
		desiredHealthy = max(expected-int32(maxUnavailable), 0)
	case pdb.Spec.MinAvailable != nil && pdb.Spec.MinAvailable.Type == intstr.Int:
		desiredHealthy = pdb.Spec.MinAvailable.IntVal
		expected = int32(len(pods))
	case pdb.Spec.MinAvailable != nil && pdb.Spec.MinAvailable.Type == intstr.String:
		expected, unmanaged, err = ExpectedScale(pods, find)
		if err != nil {
			return 0, 0, nil, err
		}
		minAvailable, err := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MinAvailable, int(expected), true)
		if err != nil {
			return 0, 0, nil, err
		}
		desiredHealthy = int32(minAvailable)
	}
	return expected, desiredHealthy, unmanaged, nil
}

// DisruptedPods keeps the entries of pdb's status.disruptedPods whose pods
// still exist, are not being deleted and whose deletion is not overdue; it
// returns the earliest time one of them becomes overdue (nil if none) and
// the names of the overdue pods.
func DisruptedPods(pdb *policyv1.PodDisruptionBudget, pods []*corev1.Pod, now time.Time) (map[string]metav1.Time, *time.Time, []string) {
	out := map[string]metav1.Time{}
	var recheck *time.Time
	var overdue []string
	if pdb.Status.DisruptedPods == nil {
		return out, nil, nil
	}
	for _, pod := range pods {
		if pod.DeletionTimestamp != nil {
			continue
		}
		t, ok := pdb.Status.DisruptedPods[pod.Name]
		if !ok {
			continue
		}
		due := t.Add(DeletionTimeout)
		if due.Before(now) {
			overdue = append(overdue, pod.Name)
			continue
		}
		if recheck == nil || due.Before(*recheck) {
			recheck = &due
		}
		out[pod.Name] = t
	}
	return out, recheck, overdue
}

// IsPodReady reports the pod's Ready condition.
func IsPodReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// CountHealthy counts the ready pods that are neither being deleted nor
// recorded as about to be evicted.
func CountHealthy(pods []*corev1.Pod, disrupted map[string]metav1.Time, now time.Time) int32 {
	var n int32
	for _, pod := range pods {
		if pod.DeletionTimestamp != nil {
			continue
		}
		if t, ok := disrupted[pod.Name]; ok && t.Add(DeletionTimeout).After(now) {
			continue
		}
		if IsPodReady(pod) {
			n++
		}
	}
	return n
}

// Status is the status pdb should have. disruptionsAllowed is 0 while no
// pod is expected, so a budget whose first pods appear is safe before the
// controller has seen them.
func Status(pdb *policyv1.PodDisruptionBudget, currentHealthy, desiredHealthy, expected int32, disrupted map[string]metav1.Time) policyv1.PodDisruptionBudgetStatus {
	allowed := currentHealthy - desiredHealthy
	if expected <= 0 || allowed <= 0 {
		allowed = 0
	}
	st := policyv1.PodDisruptionBudgetStatus{
		CurrentHealthy:     currentHealthy,
		DesiredHealthy:     desiredHealthy,
		ExpectedPods:       expected,
		DisruptionsAllowed: allowed,
		DisruptedPods:      disrupted,
		ObservedGeneration: pdb.Generation,
		Conditions:         append([]metav1.Condition(nil), pdb.Status.Conditions...),
	}
	SetAllowedCondition(&st)
	return st
}

// SetAllowedCondition sets the DisruptionAllowed condition from
// disruptionsAllowed.
func SetAllowedCondition(st *policyv1.PodDisruptionBudgetStatus) {
	c := metav1.Condition{Type: policyv1.DisruptionAllowedCondition, Status: metav1.ConditionFalse,
		Reason: policyv1.InsufficientPodsReason, ObservedGeneration: st.ObservedGeneration}
	if st.DisruptionsAllowed > 0 {
		c.Status, c.Reason = metav1.ConditionTrue, policyv1.SufficientPodsReason
	}
	if st.Conditions == nil {
		st.Conditions = []metav1.Condition{}
	}
	apimeta.SetStatusCondition(&st.Conditions, c)
}

// conditionUpToDate reports whether pdb's DisruptionAllowed condition
// agrees with its status.
func conditionUpToDate(pdb *policyv1.PodDisruptionBudget) bool {
	c := apimeta.FindStatusCondition(pdb.Status.Conditions, policyv1.DisruptionAllowedCondition)
	if c == nil || pdb.Status.ObservedGeneration != pdb.Generation {
		return false
	}
	if pdb.Status.DisruptionsAllowed > 0 {
		return c.Status == metav1.ConditionTrue && c.Reason == policyv1.SufficientPodsReason
	}
	return c.Status == metav1.ConditionFalse && c.Reason == policyv1.InsufficientPodsReason
}

// replicas is spec.replicas, 1 when unset (the API default).
func replicas(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

var (
	kindRS  = appsv1.SchemeGroupVersion.WithKind("ReplicaSet")
	kindDep = appsv1.SchemeGroupVersion.WithKind("Deployment")
	kindSS  = appsv1.SchemeGroupVersion.WithKind("StatefulSet")
)
