package deployment

import (
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func ptr[T any](v T) *T { return &v }

func rolling(replicas int32, surge, unavail intstr.IntOrString) *appsv1.Deployment {
	return &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: &replicas, Strategy: appsv1.DeploymentStrategy{
		Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &surge, MaxUnavailable: &unavail}}}}
}

func rs(name string, spec, available int32, age time.Duration) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(time.Now().Add(-age))},
		Spec: appsv1.ReplicaSetSpec{Replicas: &spec}, Status: appsv1.ReplicaSetStatus{Replicas: spec, AvailableReplicas: available}}
}

func TestResolveFenceposts(t *testing.T) {
	for _, c := range []struct {
		surge, unavail intstr.IntOrString
		desired        int32
		s, u           int32
	}{
		{intstr.FromString("25%"), intstr.FromString("25%"), 10, 3, 2},
		{intstr.FromInt32(1), intstr.FromInt32(0), 3, 1, 0},
		{intstr.FromInt32(0), intstr.FromInt32(0), 3, 0, 1},
		{intstr.FromString("50%"), intstr.FromString("50%"), 3, 2, 1},
	} {
		s, u := ResolveFenceposts(&c.surge, &c.unavail, c.desired)
		if s != c.s || u != c.u {
			t.Errorf("%v/%v of %d = %d/%d, want %d/%d", c.surge.String(), c.unavail.String(), c.desired, s, u, c.s, c.u)
		}
	}
}

func TestRollingSteps(t *testing.T) {
	// 3 replicas, maxSurge 1, maxUnavailable 0.
	d := rolling(3, intstr.FromInt32(1), intstr.FromInt32(0))
	old := rs("old", 3, 3, time.Hour)
	newRS := rs("new", 0, 0, 0)
	if got := NewRSNewReplicas(d, []*appsv1.ReplicaSet{old, newRS}, newRS); got != 1 {
		t.Fatalf("first surge = %d, want 1", got)
	}
	// New pod not yet available: nothing may go.
	newRS = rs("new", 1, 0, 0)
	if plan := ScaleDownPlan(d, []*appsv1.ReplicaSet{old}, newRS); len(plan) != 0 {
		t.Fatalf("scaled down before the new pod was available: %v", plan)
	}
	if got := NewRSNewReplicas(d, []*appsv1.ReplicaSet{old, newRS}, newRS); got != 1 {
		t.Fatalf("surged past maxSurge: %d", got)
	}
	// Once available, one old pod goes.
	newRS = rs("new", 1, 1, 0)
	if plan := ScaleDownPlan(d, []*appsv1.ReplicaSet{old}, newRS); plan["old"] != 2 {
		t.Fatalf("plan = %v, want old→2", plan)
	}

	// 4 replicas, maxSurge 0, maxUnavailable 2: old goes down by 2 first.
	d = rolling(4, intstr.FromInt32(0), intstr.FromInt32(2))
	old = rs("old", 4, 4, time.Hour)
	newRS = rs("new", 0, 0, 0)
	if got := NewRSNewReplicas(d, []*appsv1.ReplicaSet{old, newRS}, newRS); got != 0 {
		t.Fatalf("scale up with no surge = %d, want 0", got)
	}
	if plan := ScaleDownPlan(d, []*appsv1.ReplicaSet{old}, newRS); plan["old"] != 2 {
		t.Fatalf("plan = %v, want old→2", plan)
	}

	// Unhealthy old replicas are cleaned up first, oldest RS first.
	d = rolling(3, intstr.FromInt32(1), intstr.FromInt32(1))
	older, middle := rs("older", 2, 0, 2*time.Hour), rs("middle", 2, 2, time.Hour)
	newRS = rs("new", 1, 0, 0)
	plan := ScaleDownPlan(d, []*appsv1.ReplicaSet{middle, older}, newRS)
	if plan["older"] != 0 {
		t.Fatalf("plan = %v, want unavailable older→0", plan)
	}
}

func TestProportionalSizes(t *testing.T) {
	a, b := rs("a", 6, 6, time.Hour), rs("b", 4, 4, 0)
	got := ProportionalSizes([]*appsv1.ReplicaSet{a, b}, 5)
	if got["a"]+got["b"] != 15 || got["a"] != 9 || got["b"] != 6 {
		t.Fatalf("scale up = %v", got)
	}
	got = ProportionalSizes([]*appsv1.ReplicaSet{a, b}, -5)
	if got["a"]+got["b"] != 5 || got["a"] < 0 || got["b"] < 0 {
		t.Fatalf("scale down = %v", got)
	}
}

func TestHashAndTemplateEquality(t *testing.T) {
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "x"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx:1"}}}}
	h1 := ComputeHash(&tmpl, nil)
	if h1 != ComputeHash(tmpl.DeepCopy(), nil) {
		t.Fatal("hash not deterministic")
	}
	if h1 == ComputeHash(&tmpl, ptr(int32(1))) {
		t.Fatal("collisionCount does not change the hash")
	}
	other := tmpl.DeepCopy()
	other.Spec.Containers[0].Image = "nginx:2"
	if h1 == ComputeHash(other, nil) {
		t.Fatal("different templates hash alike")
	}
	labelled := tmpl.DeepCopy()
	labelled.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = h1
	if !EqualIgnoreHash(&tmpl, labelled) || EqualIgnoreHash(&tmpl, other) {
		t.Fatal("EqualIgnoreHash")
	}
}
