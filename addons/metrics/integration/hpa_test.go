package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/nodetest"
	"github.com/skiffhq/skiff/internal/testimages"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// The HPA test's own pod range and bridge.
const (
	hpaPodCIDR = "10.42.245.0/24"
	hpaBridge  = "skiffmx1"
)

// TestHPAScalesOnRealCPU drives a HorizontalPodAutoscaler made by
// `kubectl autoscale` through real metrics: a Deployment of the test
// server on containerd, CPU load from /burn requests to its pods, the
// agent's cgroup stats, the metrics add-on, metrics.k8s.io, the HPA
// controller and the Deployment's scale. Load scales it up; without load
// it scales back down once the (shortened) stabilization window passes.
func TestHPAScalesOnRealCPU(t *testing.T) {
	nodetest.Require(t)
	if _, err := os.Stat("/usr/bin/kubectl"); err != nil {
		t.Skip("kubectl not installed")
	}
	s, _, nodeName := startNode(t, nodetest.HTTPServer, "hpa-node", hpaPodCIDR, hpaBridge)
	ctx := context.Background()
	cs := s.Client
	ns := "default"
	_, _ = cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	labels := map[string]string{"app": "web"}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](1),
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
			NodeName: nodeName, TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers: []corev1.Container{{Name: "web", Image: testimages.HTTPServer, ImagePullPolicy: corev1.PullNever,
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}}},
		}},
	}}
	eventuallyCreate(t, func() error {
		_, err := cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{})
		return err
	})
	running := func() ([]corev1.Pod, error) {
		l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return nil, err
		}
		var out []corev1.Pod
		for _, p := range l.Items {
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" && p.DeletionTimestamp == nil {
				out = append(out, p)
			}
		}
		return out, nil
	}
	eventually(t, 3*time.Minute, "the Deployment's pod runs", func() error {
		p, err := running()
		if err != nil || len(p) != 1 {
			all, _ := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			var st []string
			for _, q := range all.Items {
				st = append(st, fmt.Sprintf("%s %s %s %v", q.Name, q.Status.Phase, q.Status.PodIP, q.Status.ContainerStatuses))
			}
			ev, _ := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
			for _, e := range ev.Items {
				st = append(st, e.InvolvedObject.Name+": "+e.Reason+": "+e.Message)
			}
			return fmt.Errorf("%d running pods: %v; %s", len(p), err, strings.Join(st, "; "))
		}
		return nil
	})

	cache := filepath.Join(t.TempDir(), "cache")
	if out, err := kubectl(t, s, cache, "autoscale", "deployment", "web", "-n", ns, "--cpu-percent=50", "--min=1", "--max=3"); err != nil {
		t.Fatalf("kubectl autoscale: %v\n%s", err, out)
	}
	// Short windows for the test (upstream's scale-down default is 5 min).
	eventually(t, 30*time.Second, "behavior set", func() error {
		h, err := cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas != 1 || h.Spec.MaxReplicas != 3 || len(h.Spec.Metrics) != 1 ||
			h.Spec.Metrics[0].Resource == nil || *h.Spec.Metrics[0].Resource.Target.AverageUtilization != 50 {
			t.Fatalf("kubectl autoscale made %+v", h.Spec)
		}
		h.Spec.Behavior = &autoscalingv2.HorizontalPodAutoscalerBehavior{
			ScaleUp: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: ptr.To[int32](0),
				Policies: []autoscalingv2.HPAScalingPolicy{{Type: autoscalingv2.PodsScalingPolicy, Value: 2, PeriodSeconds: 5}}},
			ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: ptr.To[int32](10),
				Policies: []autoscalingv2.HPAScalingPolicy{{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 5}}},
		}
		_, err = cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Update(ctx, h, metav1.UpdateOptions{})
		return err
	})

	t.Run("kubectl get hpa shows the target", func(t *testing.T) {
		// "cpu: 3%/50%" once metrics exist, not "<unknown>/50%".
		re := regexp.MustCompile(`cpu: \d+%/50%`)
		var out string
		eventually(t, 90*time.Second, "a measured target", func() error {
			var err error
			out, err = kubectl(t, s, cache, "get", "hpa", "web", "-n", ns)
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			if !re.MatchString(out) {
				return fmt.Errorf("no measured target:\n%s", out)
			}
			return nil
		})
		t.Logf("kubectl get hpa:\n%s", out)
	})

	replicas := func() int32 {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return -1
		}
		return *d.Spec.Replicas
	}

	// Load: four clients keep every running pod's server busy.
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var targets []string
	wg.Go(func() {
		for loadCtx.Err() == nil {
			if p, err := running(); err == nil {
				mu.Lock()
				targets = targets[:0]
				for _, pod := range p {
					targets = append(targets, fmt.Sprintf("http://%s:%d/burn?d=300ms", pod.Status.PodIP, testimages.HTTPServerPort))
				}
				mu.Unlock()
			}
			select {
			case <-loadCtx.Done():
			case <-time.After(2 * time.Second):
			}
		}
	})
	hc := &http.Client{Timeout: 10 * time.Second}
	for i := range 4 {
		wg.Go(func() {
			for n := i; loadCtx.Err() == nil; n++ {
				mu.Lock()
				var u string
				if len(targets) > 0 {
					u = targets[n%len(targets)]
				}
				mu.Unlock()
				if u == "" {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				req, _ := http.NewRequestWithContext(loadCtx, http.MethodGet, u, nil)
				if resp, err := hc.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				} else {
					time.Sleep(100 * time.Millisecond)
				}
			}
		})
	}
	stop := func() { stopLoad(); wg.Wait() }
	defer stop()

	t.Run("scales up under load", func(t *testing.T) {
		eventually(t, 3*time.Minute, "scale up", func() error {
			if r := replicas(); r < 2 {
				return fmt.Errorf("%d replicas", r)
			}
			return nil
		})
		h, err := cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(h.Status.CurrentMetrics) != 1 || h.Status.CurrentMetrics[0].Resource == nil || h.Status.CurrentMetrics[0].Resource.Current.AverageUtilization == nil {
			t.Errorf("current metrics: %+v", h.Status.CurrentMetrics)
		} else if u := *h.Status.CurrentMetrics[0].Resource.Current.AverageUtilization; u <= 50 && h.Status.DesiredReplicas > 1 && h.Status.CurrentReplicas == 1 {
			t.Errorf("scaled up at %d%% utilization", u)
		}
		if !hasCondition(h, autoscalingv2.ScalingActive, corev1.ConditionTrue) {
			t.Errorf("conditions: %+v", h.Status.Conditions)
		}
		eventually(t, 30*time.Second, "a SuccessfulRescale event", func() error {
			ev, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=HorizontalPodAutoscaler,involvedObject.name=web"})
			if err != nil {
				return err
			}
			for _, e := range ev.Items {
				if e.Reason == "SuccessfulRescale" {
					return nil
				}
			}
			return fmt.Errorf("%d events, none SuccessfulRescale", len(ev.Items))
		})
		t.Logf("scaled to %d replicas, status %+v", replicas(), h.Status.CurrentMetrics)
	})

	t.Run("scales down without load", func(t *testing.T) {
		stop()
		eventually(t, 3*time.Minute, "scale down to 1", func() error {
			if r := replicas(); r != 1 {
				return fmt.Errorf("%d replicas", r)
			}
			return nil
		})
		out, _ := kubectl(t, s, cache, "get", "hpa", "web", "-n", ns)
		t.Logf("kubectl get hpa after the load:\n%s", out)
		if strings.Contains(out, "<unknown>") {
			t.Errorf("target unknown after scale down:\n%s", out)
		}
	})
}

func hasCondition(h *autoscalingv2.HorizontalPodAutoscaler, typ autoscalingv2.HorizontalPodAutoscalerConditionType, st corev1.ConditionStatus) bool {
	for _, c := range h.Status.Conditions {
		if c.Type == typ && c.Status == st {
			return true
		}
	}
	return false
}

// eventuallyCreate retries a create while admission still forbids it (the
// namespace's service account is not there yet).
func eventuallyCreate(t *testing.T, create func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := create()
		if err == nil {
			return
		}
		if !apierrors.IsForbidden(err) || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
