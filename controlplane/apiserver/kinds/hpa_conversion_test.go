package kinds

import (
	"encoding/json"
	"reflect"
	"testing"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kptr "k8s.io/utils/ptr"
)

func hpaHooks(t *testing.T) (from, to func([]byte) []byte) {
	t.Helper()
	for _, r := range Builtins() {
		if r.Group == "autoscaling" && r.Version == "v1" {
			if r.Hooks.FromStorage == nil || r.Hooks.ToStorage == nil {
				t.Fatal("autoscaling/v1 HPA has no conversion hooks")
			}
			if r.StorageKeyPrefix != "/registry/horizontalpodautoscalers/" {
				t.Fatalf("prefix %s", r.StorageKeyPrefix)
			}
			return r.Hooks.FromStorage, r.Hooks.ToStorage
		}
	}
	t.Fatal("no autoscaling/v1 HPA")
	return nil, nil
}

func TestHPAConversionRoundTrip(t *testing.T) {
	from, to := hpaHooks(t)
	v2 := autoscalingv2.HorizontalPodAutoscaler{
		TypeMeta:   metav1.TypeMeta{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler"},
		ObjectMeta: metav1.ObjectMeta{Name: "h", Namespace: "default"},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{Kind: "Deployment", Name: "web", APIVersion: "apps/v1"},
			MinReplicas:    kptr.To[int32](2), MaxReplicas: 10,
			Metrics: []autoscalingv2.MetricSpec{
				{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{Name: corev1.ResourceCPU,
					Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: kptr.To[int32](60)}}},
				{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{Name: corev1.ResourceMemory,
					Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: kptr.To(resource.MustParse("100Mi"))}}},
			},
			Behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: kptr.To[int32](30)}},
		},
	}
	stored, _ := json.Marshal(v2)
	var v1 autoscalingv1.HorizontalPodAutoscaler
	if err := json.Unmarshal(from(stored), &v1); err != nil {
		t.Fatal(err)
	}
	if v1.APIVersion != "autoscaling/v1" || v1.Spec.TargetCPUUtilizationPercentage == nil || *v1.Spec.TargetCPUUtilizationPercentage != 60 || v1.Spec.MaxReplicas != 10 {
		t.Fatalf("v1 view: %+v", v1)
	}
	if v1.Annotations[annMetrics] == "" || v1.Annotations[annBehavior] == "" {
		t.Fatalf("v2-only fields not preserved in annotations: %v", v1.Annotations)
	}
	// Written back through v1 unchanged: the v2 object is the same.
	back, _ := json.Marshal(v1)
	var again autoscalingv2.HorizontalPodAutoscaler
	if err := json.Unmarshal(to(back), &again); err != nil {
		t.Fatal(err)
	}
	if again.APIVersion != "autoscaling/v2" || !reflect.DeepEqual(again.Spec, v2.Spec) || len(again.Annotations) != 0 {
		t.Fatalf("round trip lost data:\n%+v\nwant\n%+v\nannotations %v", again.Spec, v2.Spec, again.Annotations)
	}
}
