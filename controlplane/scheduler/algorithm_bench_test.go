package scheduler

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
)

// benchPod builds the pods of the scheduler benchmark phases.
func algoPod(kind string, i int) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p-%d", i), Namespace: "default", UID: types.UID(fmt.Sprintf("uid-%s-%d", kind, i)), Labels: map[string]string{"phase": kind}},
		Spec: corev1.PodSpec{SchedulerName: DefaultSchedulerName, Containers: []corev1.Container{{Name: "c", Image: "pause",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")}}}}},
	}
	switch kind {
	case "anti":
		g := fmt.Sprint(i / 500)
		p.Labels["group"] = g
		p.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"group": g}}, TopologyKey: corev1.LabelHostname}}}}
	case "spread":
		sel := &metav1.LabelSelector{MatchLabels: map[string]string{"phase": kind}}
		p.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{
			{MaxSkew: 1, TopologyKey: corev1.LabelTopologyZone, WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: sel},
			{MaxSkew: 1, TopologyKey: corev1.LabelHostname, WhenUnsatisfiable: corev1.ScheduleAnyway, LabelSelector: sel},
		}
	}
	return p
}

// BenchmarkSchedulePod measures the scheduling algorithm alone (no API
// calls) on 1000 nodes that already hold 5000 pods of the same kind.
func BenchmarkSchedulePod(b *testing.B) {
	for _, kind := range []string{"plain", "anti", "spread"} {
		b.Run(kind, func(b *testing.B) {
			s, err := New(Options{Client: fake.NewSimpleClientset(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			for i := 0; i < 1000; i++ {
				n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("n-%d", i), Labels: map[string]string{corev1.LabelHostname: fmt.Sprintf("n-%d", i), corev1.LabelTopologyZone: fmt.Sprintf("z-%d", i%10)}},
					Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("128Gi"), corev1.ResourcePods: resource.MustParse("110")}}}
				s.cache.AddNode(n)
			}
			fwk := s.profiles[DefaultSchedulerName]
			ctx := context.Background()
			place := func(i int) {
				pod := algoPod(kind, i)
				s.cache.UpdateSnapshot(s.snapshot)
				res, err := s.schedulePod(ctx, fwk, framework.NewCycleState(), pod)
				if err != nil {
					b.Fatalf("pod %d: %v", i, err)
				}
				pod.Spec.NodeName = res.host
				_ = s.cache.AssumePod(pod)
			}
			for i := 0; i < 5000; i++ {
				place(i)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				place(5000 + i%4000)
			}
		})
	}
}
