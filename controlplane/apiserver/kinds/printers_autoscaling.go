package kinds

import (
	"fmt"
	"strings"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func init() {
	cols := []metav1.TableColumnDefinition{
		tblName(),
		tblCol("Reference", "string", autoscalingv2.HorizontalPodAutoscalerSpec{}.SwaggerDoc()["scaleTargetRef"]),
		tblCol("Targets", "string", autoscalingv2.HorizontalPodAutoscalerSpec{}.SwaggerDoc()["metrics"]),
		tblCol("MinPods", "string", autoscalingv2.HorizontalPodAutoscalerSpec{}.SwaggerDoc()["minReplicas"]),
		tblCol("MaxPods", "string", autoscalingv2.HorizontalPodAutoscalerSpec{}.SwaggerDoc()["maxReplicas"]),
		tblCol("Replicas", "string", autoscalingv2.HorizontalPodAutoscalerStatus{}.SwaggerDoc()["currentReplicas"]),
		tblAge(),
	}
	// autoscaling/v1 and v2 share one printer key; the row takes either.
	tblRegister("autoscaling", "HorizontalPodAutoscaler", cols, func(obj runtime.Object) []interface{} {
		switch o := obj.(type) {
		case *autoscalingv2.HorizontalPodAutoscaler:
			return hpaRow(o)
		case *autoscalingv1.HorizontalPodAutoscaler:
			return hpaRow(hpaV1ToV2(o))
		}
		return tblFallbackRow(obj, len(cols))
	})
}

func hpaRow(h *autoscalingv2.HorizontalPodAutoscaler) []interface{} {
	minPods := "<unset>"
	if h.Spec.MinReplicas != nil {
		minPods = fmt.Sprintf("%d", *h.Spec.MinReplicas)
	}
	ref := h.Spec.ScaleTargetRef.Kind + "/" + h.Spec.ScaleTargetRef.Name
	return []interface{}{h.Name, ref, hpaTargets(h.Spec.Metrics, h.Status.CurrentMetrics), minPods,
		int64(h.Spec.MaxReplicas), int64(h.Status.CurrentReplicas), tblSince(h.CreationTimestamp)}
}

// hpaV1ToV2 carries the v1 CPU target and current utilization over as a
// v2 Resource metric, as upstream's conversion does.
func hpaV1ToV2(h *autoscalingv1.HorizontalPodAutoscaler) *autoscalingv2.HorizontalPodAutoscaler {
	out := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: h.ObjectMeta,
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{
				Kind: h.Spec.ScaleTargetRef.Kind, Name: h.Spec.ScaleTargetRef.Name, APIVersion: h.Spec.ScaleTargetRef.APIVersion,
			},
			MinReplicas: h.Spec.MinReplicas,
			MaxReplicas: h.Spec.MaxReplicas,
		},
		Status: autoscalingv2.HorizontalPodAutoscalerStatus{CurrentReplicas: h.Status.CurrentReplicas},
	}
	if t := h.Spec.TargetCPUUtilizationPercentage; t != nil {
		out.Spec.Metrics = []autoscalingv2.MetricSpec{{
			Type: autoscalingv2.ResourceMetricSourceType,
			Resource: &autoscalingv2.ResourceMetricSource{Name: corev1.ResourceCPU,
				Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: t}},
		}}
	}
	if c := h.Status.CurrentCPUUtilizationPercentage; c != nil {
		out.Status.CurrentMetrics = []autoscalingv2.MetricStatus{{
			Type: autoscalingv2.ResourceMetricSourceType,
			Resource: &autoscalingv2.ResourceMetricStatus{Name: corev1.ResourceCPU,
				Current: autoscalingv2.MetricValueStatus{AverageUtilization: c}},
		}}
	}
	return out
}

// hpaTargets renders "current/target" for up to two metrics.
func hpaTargets(specs []autoscalingv2.MetricSpec, statuses []autoscalingv2.MetricStatus) string {
	if len(specs) == 0 {
		return "<none>"
	}
	st := func(i int) *autoscalingv2.MetricStatus {
		if i < len(statuses) {
			return &statuses[i]
		}
		return nil
	}
	list := make([]string, 0, len(specs))
	for i, spec := range specs {
		cur := "<unknown>"
		s := st(i)
		switch spec.Type {
		case autoscalingv2.ExternalMetricSourceType:
			if spec.External == nil {
				list = append(list, "<unknown type>")
				continue
			}
			if spec.External.Target.AverageValue != nil {
				if s != nil && s.External != nil && s.External.Current.AverageValue != nil {
					cur = s.External.Current.AverageValue.String()
				}
				list = append(list, fmt.Sprintf("%s/%s (avg)", cur, spec.External.Target.AverageValue.String()))
			} else {
				if s != nil && s.External != nil {
					cur = quantityString(s.External.Current.Value)
				}
				list = append(list, fmt.Sprintf("%s/%s", cur, quantityString(spec.External.Target.Value)))
			}
		case autoscalingv2.PodsMetricSourceType:
			if spec.Pods == nil {
				list = append(list, "<unknown type>")
				continue
			}
			if s != nil && s.Pods != nil {
				cur = quantityString(s.Pods.Current.AverageValue)
			}
			list = append(list, fmt.Sprintf("%s/%s", cur, quantityString(spec.Pods.Target.AverageValue)))
		case autoscalingv2.ObjectMetricSourceType:
			if spec.Object == nil {
				list = append(list, "<unknown type>")
				continue
			}
			if spec.Object.Target.AverageValue != nil {
				if s != nil && s.Object != nil && s.Object.Current.AverageValue != nil {
					cur = s.Object.Current.AverageValue.String()
				}
				list = append(list, fmt.Sprintf("%s/%s (avg)", cur, spec.Object.Target.AverageValue.String()))
			} else {
				if s != nil && s.Object != nil {
					cur = quantityString(s.Object.Current.Value)
				}
				list = append(list, fmt.Sprintf("%s/%s", cur, quantityString(spec.Object.Target.Value)))
			}
		case autoscalingv2.ResourceMetricSourceType:
			if spec.Resource == nil {
				list = append(list, "<unknown type>")
				continue
			}
			var cs *autoscalingv2.MetricValueStatus
			if s != nil && s.Resource != nil {
				cs = &s.Resource.Current
			}
			list = append(list, resourceTarget(spec.Resource.Name, spec.Resource.Target, cs))
		case autoscalingv2.ContainerResourceMetricSourceType:
			if spec.ContainerResource == nil {
				list = append(list, "<unknown type>")
				continue
			}
			var cs *autoscalingv2.MetricValueStatus
			if s != nil && s.ContainerResource != nil {
				cs = &s.ContainerResource.Current
			}
			list = append(list, resourceTarget(spec.ContainerResource.Name, spec.ContainerResource.Target, cs))
		default:
			list = append(list, "<unknown type>")
		}
	}
	if len(list) > 2 {
		return fmt.Sprintf("%s + %d more...", strings.Join(list[:2], ", "), len(list)-2)
	}
	return strings.Join(list, ", ")
}

func resourceTarget(name corev1.ResourceName, target autoscalingv2.MetricTarget, cur *autoscalingv2.MetricValueStatus) string {
	current := "<unknown>"
	if target.AverageValue != nil {
		if cur != nil {
			current = quantityString(cur.AverageValue)
		}
		return fmt.Sprintf("%s: %s/%s", name, current, target.AverageValue.String())
	}
	if cur != nil && cur.AverageUtilization != nil {
		current = fmt.Sprintf("%d%%", *cur.AverageUtilization)
	}
	want := "<auto>"
	if target.AverageUtilization != nil {
		want = fmt.Sprintf("%d%%", *target.AverageUtilization)
	}
	return fmt.Sprintf("%s: %s/%s", name, current, want)
}

// quantityString renders q as upstream does, "<nil>" when unset.
func quantityString(q *resource.Quantity) string {
	if q == nil {
		return "<nil>"
	}
	return q.String()
}
