package podautoscaler

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func testPod(name string, ready bool, age time.Duration, now time.Time) *corev1.Pod {
	st := corev1.ConditionTrue
	if !ready {
		st = corev1.ConditionFalse
	}
	start := metav1.NewTime(now.Add(-age))
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, StartTime: &start,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st, LastTransitionTime: start}}}}
}

func TestReplicasFor(t *testing.T) {
	now := time.Now()
	m := func(v int64) PodMetric { return PodMetric{Timestamp: now, Window: 15 * time.Second, Value: v} }
	pods := func(n int) []*corev1.Pod {
		var out []*corev1.Pod
		for i := 0; i < n; i++ {
			out = append(out, testPod(fmt.Sprintf("p%d", i), true, time.Hour, now))
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		pods    []*corev1.Pod
		metrics map[string]PodMetric
		target  int64
		want    int32
	}{
		{"scale up", pods(2), map[string]PodMetric{"p0": m(150), "p1": m(150)}, 50, 6},
		{"within tolerance stays", pods(2), map[string]PodMetric{"p0": m(54), "p1": m(54)}, 50, 2},
		{"scale down", pods(4), map[string]PodMetric{"p0": m(10), "p1": m(10), "p2": m(10), "p3": m(10)}, 50, 1},
		// p1 has no metrics: when scaling down it counts as at its request
		// (100%), which makes the ratio (20+100)/2/50 = 1.2: direction
		// flips, so no change.
		{"missing pod blocks a scale down", pods(2), map[string]PodMetric{"p0": m(20)}, 50, 2},
		// Scaling up, a missing pod counts as 0: (200+0)/2/50 = 2 → 4.
		{"missing pod dampens a scale up", pods(2), map[string]PodMetric{"p0": m(200)}, 50, 4},
		// An unready (starting) pod counts as 0 when scaling up.
		{"unready pod dampens a scale up", append(pods(1), testPod("p1", false, time.Minute, now)),
			map[string]PodMetric{"p0": m(200), "p1": m(500)}, 50, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _, _, msg := replicasFor(int32(len(tc.pods)), tc.pods, tc.metrics, corev1.ResourceCPU, tc.target, true, now)
			if msg != "" || got != tc.want {
				t.Errorf("replicas = %d (%s), want %d", got, msg, tc.want)
			}
		})
	}
	if _, _, _, msg := replicasFor(1, []*corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c"}}}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}},
		map[string]PodMetric{"x": m(1)}, corev1.ResourceCPU, 50, true, now); msg == "" {
		t.Error("a pod without a CPU request was accepted for a utilization target")
	}
}

func TestLimitPolicies(t *testing.T) {
	up, down := rules(nil)
	now := time.Now()
	// Default scale up: max(+4 pods, +100%) per 15 s.
	if got := limit(up, nil, 1, now, true); got != 5 {
		t.Errorf("up from 1 = %d, want 5", got)
	}
	if got := limit(up, nil, 10, now, true); got != 20 {
		t.Errorf("up from 10 = %d, want 20", got)
	}
	// Changes already made in the period count against it.
	if got := limit(up, []timestamped{{now.Add(-5 * time.Second), 4}}, 5, now, true); got != 5 {
		t.Errorf("up after +4 within 15 s = %d, want 5", got)
	}
	// Default scale down: -100% per 15 s (to 0, clamped by minReplicas later).
	if got := limit(down, nil, 8, now, false); got != 0 {
		t.Errorf("down from 8 = %d", got)
	}
}
