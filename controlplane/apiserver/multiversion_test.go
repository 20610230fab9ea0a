package apiserver_test

import (
	"testing"

	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// TestHPAServedInTwoVersions: one stored object, read and written through
// autoscaling/v1 and autoscaling/v2.
func TestHPAServedInTwoVersions(t *testing.T) {
	// Conversion is the subject: no HPA controller writing status between
	// this test's read and update.
	s := testserver.Start(t, func(c *server.Config) { c.Disable = append(c.Disable, "controller-manager") })
	ctx := ctxT(t)
	v1c := s.Client.AutoscalingV1().HorizontalPodAutoscalers("default")
	v2c := s.Client.AutoscalingV2().HorizontalPodAutoscalers("default")
	_, err := v1c.Create(ctx, &autoscalingv1.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "h"},
		Spec: autoscalingv1.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv1.CrossVersionObjectReference{Kind: "Deployment", Name: "web", APIVersion: "apps/v1"},
			MaxReplicas:    5, TargetCPUUtilizationPercentage: ptr.To[int32](70),
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h2, err := v2c.Get(ctx, "h", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(h2.Spec.Metrics) != 1 || h2.Spec.Metrics[0].Resource.Name != corev1.ResourceCPU || *h2.Spec.Metrics[0].Resource.Target.AverageUtilization != 70 {
		t.Fatalf("v2 view of a v1 object: %+v", h2.Spec.Metrics)
	}
	h2.Spec.Metrics[0].Resource.Target.AverageUtilization = ptr.To[int32](40)
	if _, err := v2c.Update(ctx, h2, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h1, err := v1c.Get(ctx, "h", metav1.GetOptions{})
	if err != nil || h1.Spec.TargetCPUUtilizationPercentage == nil || *h1.Spec.TargetCPUUtilizationPercentage != 40 {
		t.Fatalf("v1 view after v2 update: %v %+v", err, h1.Spec)
	}
	l, err := v1c.List(ctx, metav1.ListOptions{})
	if err != nil || len(l.Items) != 1 || l.Items[0].APIVersion != "" && l.Items[0].APIVersion != "autoscaling/v1" {
		t.Fatalf("v1 list: %v %+v", err, l)
	}
	if l.Items[0].Spec.TargetCPUUtilizationPercentage == nil {
		t.Fatalf("v1 list items not converted: %+v", l.Items[0].Spec)
	}
	_ = autoscalingv2.HorizontalPodAutoscaler{}
}
