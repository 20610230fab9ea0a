package podautoscaler_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/internal/scales/scalestest"
	"github.com/skiffhq/skiff/controlplane/controllers/podautoscaler"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/nodeagent/hollow"
	"github.com/skiffhq/skiff/server"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/utils/ptr"
)

// syntheticMetrics gives every selected running pod the same CPU usage.
type syntheticMetrics struct {
	mu     sync.Mutex
	milli  int64
	lister func(ns string, sel labels.Selector) ([]*corev1.Pod, error)
}

func (s *syntheticMetrics) set(m int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.milli = m
}

func (s *syntheticMetrics) PodMetrics(_ context.Context, ns string, sel labels.Selector, _ corev1.ResourceName) (map[string]podautoscaler.PodMetric, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pods, err := s.lister(ns, sel)
	if err != nil {
		return nil, err
	}
	out := map[string]podautoscaler.PodMetric{}
	for _, p := range pods {
		if p.Status.Phase == corev1.PodRunning {
			out[p.Name] = podautoscaler.PodMetric{Timestamp: time.Now(), Window: time.Second, Value: s.milli}
		}
	}
	return out, nil
}

// TestHPAScalesADeployment runs the controller against a real server and
// hollow nodes, with synthetic pod metrics: up on load (limited by
// maxReplicas), steady within the tolerance, down after the stabilization
// window.
func TestHPAScalesADeployment(t *testing.T) {
	s := testserver.Start(t, func(c *server.Config) {
		c.Controllers = []string{"*", "-" + podautoscaler.Name}
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if _, err := hollow.Start(ctx, s.Config, hollow.Options{Nodes: 2, NamePrefix: "hpa-node-"}); err != nil {
		t.Fatal(err)
	}
	ns := "default"
	cs := s.Client
	_, _ = cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](1),
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}}, Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "c", Image: "busybox", Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}}}}},
	}}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	hpa := &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}, Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
		ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"},
		MinReplicas:    ptr.To[int32](1), MaxReplicas: 4,
		Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
			Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr.To[int32](50)}}}},
		Behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: ptr.To[int32](3)}},
	}}
	if _, err := cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, hpa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	f := informers.NewSharedInformerFactory(cs, 0)
	podLister := f.Core().V1().Pods().Lister()
	sm := &syntheticMetrics{lister: func(ns string, sel labels.Selector) ([]*corev1.Pod, error) { return podLister.Pods(ns).List(sel) }}
	c, err := podautoscaler.New(podautoscaler.Config{Client: cs, Informers: f, Metrics: sm, SyncPeriod: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f.Start(ctx.Done())
	go func() { _ = c.Run(ctx, 1) }()

	replicas := func() int32 {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return -1
		}
		return *d.Spec.Replicas
	}
	waitFor := func(what string, d time.Duration, ok func(*autoscalingv2.HorizontalPodAutoscaler) error) *autoscalingv2.HorizontalPodAutoscaler {
		t.Helper()
		deadline := time.Now().Add(d)
		for {
			h, err := cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "web", metav1.GetOptions{})
			if err == nil {
				if err = ok(h); err == nil {
					return h
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v (replicas %d)", what, err, replicas())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	cond := func(h *autoscalingv2.HorizontalPodAutoscaler, typ autoscalingv2.HorizontalPodAutoscalerConditionType) string {
		for _, c := range h.Status.Conditions {
			if c.Type == typ {
				return string(c.Status) + "/" + c.Reason
			}
		}
		return ""
	}

	// 150m per pod against 50% of 100m: ratio 3 → 3 replicas.
	sm.set(150)
	waitFor("scale up to 3", 30*time.Second, func(h *autoscalingv2.HorizontalPodAutoscaler) error {
		if r := replicas(); r != 3 || h.Status.DesiredReplicas != 3 {
			return fmt.Errorf("replicas %d, desired %d, conditions %+v", r, h.Status.DesiredReplicas, h.Status.Conditions)
		}
		return nil
	})
	// Wait for the three pods to run, then hold at 52 % (within tolerance).
	waitFor("3 pods with metrics, 52%", 30*time.Second, func(h *autoscalingv2.HorizontalPodAutoscaler) error {
		sm.set(52)
		pods, _ := podLister.Pods(ns).List(labels.SelectorFromSet(labels.Set{"app": "web"}))
		running := 0
		for _, p := range pods {
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		if running != 3 || len(h.Status.CurrentMetrics) == 0 || h.Status.CurrentMetrics[0].Resource.Current.AverageUtilization == nil ||
			*h.Status.CurrentMetrics[0].Resource.Current.AverageUtilization != 52 {
			return fmt.Errorf("%d running, metrics %+v", running, h.Status.CurrentMetrics)
		}
		return nil
	})
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if r := replicas(); r != 3 {
			t.Fatalf("52%% of target changed replicas to %d", r)
		}
	}
	// 10 %: ratio 0.2 → 1 replica, but only once the 3 s window passed.
	sm.set(10)
	down := time.Now()
	waitFor("scale down to 1", 30*time.Second, func(h *autoscalingv2.HorizontalPodAutoscaler) error {
		if r := replicas(); r != 1 {
			return fmt.Errorf("replicas %d", r)
		}
		return nil
	})
	if el := time.Since(down); el < 2500*time.Millisecond {
		t.Errorf("scaled down after %v, inside the 3 s stabilization window", el)
	}
	// A huge load is capped at maxReplicas 4.
	sm.set(2000)
	h := waitFor("capped at max", 30*time.Second, func(h *autoscalingv2.HorizontalPodAutoscaler) error {
		if r := replicas(); r != 4 || cond(h, autoscalingv2.ScalingLimited) != "True/TooManyReplicas" {
			return fmt.Errorf("replicas %d, limited %s", r, cond(h, autoscalingv2.ScalingLimited))
		}
		return nil
	})
	if a := cond(h, autoscalingv2.AbleToScale); (a != "True/SucceededRescale" && a != "True/ReadyForNewScale") || cond(h, autoscalingv2.ScalingActive) != "True/ValidMetricFound" || h.Status.LastScaleTime == nil {
		t.Errorf("conditions %+v", h.Status.Conditions)
	}
}

// TestHPAKeepsACustomResourceWithinBounds: the target is a custom
// resource with a scale subresource. Below minReplicas it is scaled up to
// it, above maxReplicas down to it, without metrics (as upstream), through
// the resource's /scale.
func TestHPAKeepsACustomResourceWithinBounds(t *testing.T) {
	s := testserver.Start(t, func(c *server.Config) {
		c.Controllers = []string{"*", "-" + podautoscaler.Name}
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	scalestest.CreateCRD(t, s)
	scalestest.Create(t, s, "default", "web", 1)
	hpa := &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"}, Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
		ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: scalestest.APIVersion, Kind: scalestest.Kind, Name: "web"},
		MinReplicas:    ptr.To[int32](3), MaxReplicas: 5,
		Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
			Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr.To[int32](50)}}}},
	}}
	if _, err := s.Client.AutoscalingV2().HorizontalPodAutoscalers("default").Create(ctx, hpa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f := informers.NewSharedInformerFactory(s.Client, 0)
	c, err := podautoscaler.New(podautoscaler.Config{Client: s.Client, Informers: f, Metrics: &syntheticMetrics{lister: func(string, labels.Selector) ([]*corev1.Pod, error) { return nil, nil }}, SyncPeriod: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f.Start(ctx.Done())
	go func() { _ = c.Run(ctx, 1) }()

	waitReplicas := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			got := scalestest.Replicas(s, "default", "web")
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				h, _ := s.Client.AutoscalingV2().HorizontalPodAutoscalers("default").Get(ctx, "web", metav1.GetOptions{})
				t.Fatalf("replicas %d, want %d; HPA status %+v", got, want, h.Status)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitReplicas(3)
	scalestest.SetReplicas(t, s, "default", "web", 9)
	waitReplicas(5)
	h, err := s.Client.AutoscalingV2().HorizontalPodAutoscalers("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h.Status.DesiredReplicas != 5 || h.Status.LastScaleTime == nil {
		t.Fatalf("HPA status after scaling down to max: %+v", h.Status)
	}
}
