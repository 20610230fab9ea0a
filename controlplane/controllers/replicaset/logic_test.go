package replicaset

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestReplicaDiff(t *testing.T) {
	for _, c := range []struct {
		want int32
		have int
		diff int
	}{{3, 0, 3}, {3, 3, 0}, {1, 4, -3}, {1000, 0, BurstReplicas}, {0, 900, -BurstReplicas}} {
		if got := ReplicaDiff(c.want, c.have); got != c.diff {
			t.Errorf("ReplicaDiff(%d, %d) = %d, want %d", c.want, c.have, got, c.diff)
		}
	}
}

func TestSlowStartBatch(t *testing.T) {
	var calls atomic.Int32
	ok, err := SlowStartBatch(10, 1, func() error { calls.Add(1); return nil })
	if ok != 10 || err != nil || calls.Load() != 10 {
		t.Fatalf("all ok: got %d %v calls %d", ok, err, calls.Load())
	}
	// Batches are 1, 2, 4, ...: failing from the 4th call on stops after the
	// batch of 4 (calls 4-7), never starting the rest.
	calls.Store(0)
	ok, err = SlowStartBatch(10, 1, func() error {
		if calls.Add(1) >= 4 {
			return errors.New("quota")
		}
		return nil
	})
	if err == nil || ok != 3 || calls.Load() != 7 {
		t.Fatalf("failing: ok=%d err=%v calls=%d, want 3 ok after 7 calls", ok, err, calls.Load())
	}
}

func pod(name, node string, phase corev1.PodPhase, ready bool, age time.Duration, now time.Time) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(now.Add(-age))},
		Spec: corev1.PodSpec{NodeName: node}, Status: corev1.PodStatus{Phase: phase}}
	if ready {
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(now.Add(-age))}}
	}
	return p
}

func names(ps []*corev1.Pod) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}

func TestPodsToDeleteRanking(t *testing.T) {
	now := time.Now()
	cases := []struct {
		name string
		pods []*corev1.Pod
		want string // first to delete
	}{
		{"unscheduled first", []*corev1.Pod{pod("sched", "n1", corev1.PodRunning, true, time.Hour, now), pod("unsched", "", corev1.PodPending, false, time.Hour, now)}, "unsched"},
		{"pending before running", []*corev1.Pod{pod("run", "n1", corev1.PodRunning, false, time.Hour, now), pod("pend", "n1", corev1.PodPending, false, time.Hour, now)}, "pend"},
		{"not ready before ready", []*corev1.Pod{pod("ready", "n1", corev1.PodRunning, true, time.Hour, now), pod("notready", "n1", corev1.PodRunning, false, time.Hour, now)}, "notready"},
		{"crowded node first", []*corev1.Pod{pod("alone", "n1", corev1.PodRunning, true, time.Hour, now), pod("crowd1", "n2", corev1.PodRunning, true, time.Hour, now), pod("crowd2", "n2", corev1.PodRunning, true, 2*time.Hour, now)}, "crowd1"},
		{"ready more recently first", []*corev1.Pod{pod("old", "n1", corev1.PodRunning, true, 10*time.Hour, now), pod("new", "n2", corev1.PodRunning, true, time.Minute, now)}, "new"},
		{"newer before older", []*corev1.Pod{pod("older", "n1", corev1.PodPending, false, time.Hour, now), pod("newer", "n2", corev1.PodPending, false, time.Minute, now)}, "newer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := PodsToDelete(c.pods, c.pods, 1, now)
			if len(got) != 1 || got[0].Name != c.want {
				t.Fatalf("deleted %v, want %s", names(got), c.want)
			}
		})
	}
	t.Run("deletion cost", func(t *testing.T) {
		a, b := pod("cheap", "n1", corev1.PodRunning, true, time.Hour, now), pod("dear", "n2", corev1.PodRunning, true, time.Minute, now)
		a.Annotations = map[string]string{PodDeletionCost: "-10"}
		b.Annotations = map[string]string{PodDeletionCost: "100"}
		if got := PodsToDelete([]*corev1.Pod{b, a}, nil, 1, now); got[0].Name != "cheap" {
			t.Fatalf("deleted %v, want cheap", names(got))
		}
	})
}

func TestCalculateStatus(t *testing.T) {
	now := time.Now()
	three := int32(3)
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Generation: 4}, Spec: appsv1.ReplicaSetSpec{
		Replicas: &three, MinReadySeconds: 30,
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "x", "tier": "web"}}},
	}}
	long := pod("a", "n", corev1.PodRunning, true, time.Hour, now)
	long.Labels = map[string]string{"app": "x", "tier": "web"}
	fresh := pod("b", "n", corev1.PodRunning, true, 5*time.Second, now)
	fresh.Labels = map[string]string{"app": "x", "tier": "web"}
	partial := pod("c", "n", corev1.PodPending, false, time.Hour, now)
	partial.Labels = map[string]string{"app": "x"}
	st := CalculateStatus(rs, []*corev1.Pod{long, fresh, partial}, nil, now)
	if st.Replicas != 3 || st.FullyLabeledReplicas != 2 || st.ReadyReplicas != 2 || st.AvailableReplicas != 1 || st.ObservedGeneration != 4 {
		t.Fatalf("status = %+v", st)
	}
	st = CalculateStatus(rs, nil, errors.New("pods is forbidden: exceeded quota"), now)
	if len(st.Conditions) != 1 || st.Conditions[0].Type != appsv1.ReplicaSetReplicaFailure || st.Conditions[0].Reason != "FailedCreate" {
		t.Fatalf("conditions = %+v", st.Conditions)
	}
	rs.Status = st
	if st = CalculateStatus(rs, nil, nil, now); len(st.Conditions) != 0 {
		t.Fatalf("failure condition kept after success: %+v", st.Conditions)
	}
}
