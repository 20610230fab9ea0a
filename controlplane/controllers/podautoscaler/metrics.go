package podautoscaler

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

// APIMetrics reads PodMetrics from metrics.k8s.io/v1beta1.
type APIMetrics struct{ Client kubernetes.Interface }

// PodMetrics implements Metrics: per pod, the sum over its containers, in
// milli-units (millicores; milli-bytes for memory, as upstream's
// resource metrics client).
func (m APIMetrics) PodMetrics(ctx context.Context, ns string, sel labels.Selector, res corev1.ResourceName) (map[string]PodMetric, error) {
	var l metricsv1beta1.PodMetricsList
	err := m.Client.CoreV1().RESTClient().Get().AbsPath("/apis/metrics.k8s.io/v1beta1/namespaces", ns, "pods").
		Param("labelSelector", sel.String()).Do(ctx).Into(&l)
	if err != nil {
		return nil, fmt.Errorf("metrics.k8s.io: %w", err)
	}
	out := make(map[string]PodMetric, len(l.Items))
	for _, pm := range l.Items {
		var sum int64
		ok := true
		for _, c := range pm.Containers {
			q, has := c.Usage[res]
			if !has {
				ok = false
				break
			}
			sum += q.MilliValue()
		}
		if ok {
			out[pm.Name] = PodMetric{Timestamp: pm.Timestamp.Time, Window: pm.Window.Duration, Value: sum}
		}
	}
	return out, nil
}
