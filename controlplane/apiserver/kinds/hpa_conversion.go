package kinds

import (
	"encoding/json"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// HorizontalPodAutoscalers are stored as autoscaling/v2 (upstream's storage
// version) and served as v1 and v2. What v1 cannot express (other metrics,
// behavior, conditions) travels in the annotations upstream uses, so an
// object read and written back through v1 loses nothing.
const (
	annMetrics        = "autoscaling.alpha.kubernetes.io/metrics"
	annBehavior       = "autoscaling.alpha.kubernetes.io/behavior"
	annConditions     = "autoscaling.alpha.kubernetes.io/conditions"
	annCurrentMetrics = "autoscaling.alpha.kubernetes.io/current-metrics"
)

func init() {
	prev := hookSet[gk("autoscaling", "HorizontalPodAutoscaler")]
	hookSet[gk("autoscaling", "HorizontalPodAutoscaler")] = func(r *registry.Resource) {
		if prev != nil {
			prev(r)
		}
		if r.Version != "v1" {
			return
		}
		r.Hooks.FromStorage = func(data []byte) []byte {
			var v2 autoscalingv2.HorizontalPodAutoscaler
			if err := json.Unmarshal(data, &v2); err != nil {
				return data
			}
			out, err := json.Marshal(convertHPAv2ToV1(&v2))
			if err != nil {
				return data
			}
			return out
		}
		r.Hooks.ToStorage = func(data []byte) []byte {
			var v1 autoscalingv1.HorizontalPodAutoscaler
			if err := json.Unmarshal(data, &v1); err != nil {
				return data
			}
			out, err := json.Marshal(convertHPAv1ToV2(&v1))
			if err != nil {
				return data
			}
			return out
		}
	}
}

func isCPUUtilization(m autoscalingv2.MetricSpec) bool {
	return m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil &&
		m.Resource.Name == corev1.ResourceCPU && m.Resource.Target.Type == autoscalingv2.UtilizationMetricType &&
		m.Resource.Target.AverageUtilization != nil
}

func convertHPAv2ToV1(in *autoscalingv2.HorizontalPodAutoscaler) *autoscalingv1.HorizontalPodAutoscaler {
	out := &autoscalingv1.HorizontalPodAutoscaler{
		TypeMeta:   metav1.TypeMeta{APIVersion: "autoscaling/v1", Kind: "HorizontalPodAutoscaler"},
		ObjectMeta: *in.ObjectMeta.DeepCopy(),
		Spec: autoscalingv1.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv1.CrossVersionObjectReference{
				Kind: in.Spec.ScaleTargetRef.Kind, Name: in.Spec.ScaleTargetRef.Name, APIVersion: in.Spec.ScaleTargetRef.APIVersion,
			},
			MinReplicas: in.Spec.MinReplicas,
			MaxReplicas: in.Spec.MaxReplicas,
		},
		Status: autoscalingv1.HorizontalPodAutoscalerStatus{
			ObservedGeneration: in.Status.ObservedGeneration,
			LastScaleTime:      in.Status.LastScaleTime,
			CurrentReplicas:    in.Status.CurrentReplicas,
			DesiredReplicas:    in.Status.DesiredReplicas,
		},
	}
	var other []autoscalingv2.MetricSpec
	for _, m := range in.Spec.Metrics {
		if isCPUUtilization(m) && out.Spec.TargetCPUUtilizationPercentage == nil {
			v := *m.Resource.Target.AverageUtilization
			out.Spec.TargetCPUUtilizationPercentage = &v
			continue
		}
		other = append(other, m)
	}
	var otherCurrent []autoscalingv2.MetricStatus
	for _, m := range in.Status.CurrentMetrics {
		if m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil && m.Resource.Name == corev1.ResourceCPU &&
			m.Resource.Current.AverageUtilization != nil && out.Status.CurrentCPUUtilizationPercentage == nil {
			v := *m.Resource.Current.AverageUtilization
			out.Status.CurrentCPUUtilizationPercentage = &v
			continue
		}
		otherCurrent = append(otherCurrent, m)
	}
	setJSONAnnotation(&out.ObjectMeta, annMetrics, other, len(other) > 0)
	setJSONAnnotation(&out.ObjectMeta, annBehavior, in.Spec.Behavior, in.Spec.Behavior != nil)
	setJSONAnnotation(&out.ObjectMeta, annConditions, in.Status.Conditions, len(in.Status.Conditions) > 0)
	setJSONAnnotation(&out.ObjectMeta, annCurrentMetrics, otherCurrent, len(otherCurrent) > 0)
	return out
}

func convertHPAv1ToV2(in *autoscalingv1.HorizontalPodAutoscaler) *autoscalingv2.HorizontalPodAutoscaler {
	out := &autoscalingv2.HorizontalPodAutoscaler{
		TypeMeta:   metav1.TypeMeta{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler"},
		ObjectMeta: *in.ObjectMeta.DeepCopy(),
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{
				Kind: in.Spec.ScaleTargetRef.Kind, Name: in.Spec.ScaleTargetRef.Name, APIVersion: in.Spec.ScaleTargetRef.APIVersion,
			},
			MinReplicas: in.Spec.MinReplicas,
			MaxReplicas: in.Spec.MaxReplicas,
		},
		Status: autoscalingv2.HorizontalPodAutoscalerStatus{
			ObservedGeneration: in.Status.ObservedGeneration,
			LastScaleTime:      in.Status.LastScaleTime,
			CurrentReplicas:    in.Status.CurrentReplicas,
			DesiredReplicas:    in.Status.DesiredReplicas,
		},
	}
	if in.Spec.TargetCPUUtilizationPercentage != nil {
		v := *in.Spec.TargetCPUUtilizationPercentage
		out.Spec.Metrics = append(out.Spec.Metrics, autoscalingv2.MetricSpec{
			Type: autoscalingv2.ResourceMetricSourceType,
			Resource: &autoscalingv2.ResourceMetricSource{Name: corev1.ResourceCPU,
				Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: &v}},
		})
	}
	if in.Status.CurrentCPUUtilizationPercentage != nil {
		v := *in.Status.CurrentCPUUtilizationPercentage
		out.Status.CurrentMetrics = append(out.Status.CurrentMetrics, autoscalingv2.MetricStatus{
			Type:     autoscalingv2.ResourceMetricSourceType,
			Resource: &autoscalingv2.ResourceMetricStatus{Name: corev1.ResourceCPU, Current: autoscalingv2.MetricValueStatus{AverageUtilization: &v}},
		})
	}
	var metrics []autoscalingv2.MetricSpec
	if takeJSONAnnotation(&out.ObjectMeta, annMetrics, &metrics) {
		out.Spec.Metrics = append(out.Spec.Metrics, metrics...)
	}
	var behavior autoscalingv2.HorizontalPodAutoscalerBehavior
	if takeJSONAnnotation(&out.ObjectMeta, annBehavior, &behavior) {
		out.Spec.Behavior = &behavior
	}
	var conds []autoscalingv2.HorizontalPodAutoscalerCondition
	if takeJSONAnnotation(&out.ObjectMeta, annConditions, &conds) {
		out.Status.Conditions = conds
	}
	var current []autoscalingv2.MetricStatus
	if takeJSONAnnotation(&out.ObjectMeta, annCurrentMetrics, &current) {
		out.Status.CurrentMetrics = append(out.Status.CurrentMetrics, current...)
	}
	return out
}

func setJSONAnnotation(m *metav1.ObjectMeta, key string, v interface{}, set bool) {
	if !set {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	if m.Annotations == nil {
		m.Annotations = map[string]string{}
	}
	m.Annotations[key] = string(b)
}

func takeJSONAnnotation(m *metav1.ObjectMeta, key string, into interface{}) bool {
	s, ok := m.Annotations[key]
	if !ok {
		return false
	}
	delete(m.Annotations, key)
	if len(m.Annotations) == 0 {
		m.Annotations = nil
	}
	return json.Unmarshal([]byte(s), into) == nil
}
