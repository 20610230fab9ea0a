package admission_test

import (
	"context"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testserver"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func testPriority(t *testing.T, s *testserver.Server) {
	ctx := context.Background()
	c := s.Client
	namespace(t, c, "prio", nil)

	for name, want := range map[string]int32{"system-cluster-critical": 2000000000, "system-node-critical": 2000001000} {
		pc, err := c.SchedulingV1().PriorityClasses().Get(ctx, name, metav1.GetOptions{})
		if err != nil || pc.Value != want {
			t.Fatalf("built-in class %s: %+v %v", name, pc, err)
		}
	}
	got, err := c.CoreV1().Pods("prio").Create(ctx, pod("critical", func(p *corev1.Pod) {
		p.Spec.PriorityClassName = "system-node-critical"
	}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Spec.Priority == nil || *got.Spec.Priority != 2000001000 {
		t.Errorf("priority = %v", got.Spec.Priority)
	}
	got, err = c.CoreV1().Pods("prio").Create(ctx, pod("plain"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Spec.Priority == nil || *got.Spec.Priority != 0 || got.Spec.PreemptionPolicy == nil || *got.Spec.PreemptionPolicy != corev1.PreemptLowerPriority {
		t.Errorf("no class: priority %v, policy %v", got.Spec.Priority, got.Spec.PreemptionPolicy)
	}
	_, err = c.CoreV1().Pods("prio").Create(ctx, pod("ghost", func(p *corev1.Pod) { p.Spec.PriorityClassName = "ghost" }), metav1.CreateOptions{})
	wantStatus(t, err, 403, `pods "ghost" is forbidden: no PriorityClass with name ghost was found`)
	_, err = c.CoreV1().Pods("prio").Create(ctx, pod("forged", func(p *corev1.Pod) {
		p.Spec.PriorityClassName = "system-cluster-critical"
		p.Spec.Priority = ptr.To(int32(7))
	}), metav1.CreateOptions{})
	wantStatus(t, err, 403, `pods "forged" is forbidden: the integer value of priority (7) must not be provided in pod spec; priority admission controller computed 2000000000 from the given PriorityClass name`)

	// A global default applies to pods without a class; only one may exist.
	never := corev1.PreemptNever
	if _, err := c.SchedulingV1().PriorityClasses().Create(ctx, &schedulingv1.PriorityClass{
		ObjectMeta: metav1.ObjectMeta{Name: "everyone"}, Value: 1000, GlobalDefault: true, PreemptionPolicy: &never,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.SchedulingV1().PriorityClasses().Delete(ctx, "everyone", metav1.DeleteOptions{}) })
	i := 0
	eventually(t, "global default", 5*time.Second, func() (bool, error) {
		i++
		got, err := c.CoreV1().Pods("prio").Create(ctx, pod("d"+string(rune('a'+i))), metav1.CreateOptions{})
		if err != nil {
			return false, err
		}
		return got.Spec.PriorityClassName == "everyone" && *got.Spec.Priority == 1000 && *got.Spec.PreemptionPolicy == corev1.PreemptNever, nil
	})
	_, err = c.SchedulingV1().PriorityClasses().Create(ctx, &schedulingv1.PriorityClass{
		ObjectMeta: metav1.ObjectMeta{Name: "second"}, Value: 5, GlobalDefault: true,
	}, metav1.CreateOptions{})
	wantStatus(t, err, 403, `priorityclasses.scheduling.k8s.io "second" is forbidden: PriorityClass everyone is already marked as default. Only one default can exist`)
}
