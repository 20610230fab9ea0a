package admission_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testserver"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

func createQuota(t *testing.T, c kubernetes.Interface, ns, name string, hard corev1.ResourceList) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.CoreV1().ResourceQuotas(ns).Create(ctx, &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.ResourceQuotaSpec{Hard: hard},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "quota status.hard", 10*time.Second, func() (bool, error) {
		q, err := c.CoreV1().ResourceQuotas(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && len(q.Status.Hard) == len(hard), err
	})
}

func used(t *testing.T, c kubernetes.Interface, ns, name string, r corev1.ResourceName) string {
	t.Helper()
	q, err := c.CoreV1().ResourceQuotas(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v := q.Status.Used[r]
	return v.String()
}

func testResourceQuota(t *testing.T, s *testserver.Server) {
	ctx := context.Background()
	c := s.Client
	q := resource.MustParse
	namespace(t, c, "quota", nil)
	createQuota(t, c, "quota", "compute", corev1.ResourceList{
		corev1.ResourcePods: q("2"), corev1.ResourceRequestsCPU: q("1"), "count/deployments.apps": q("0"),
	})
	withCPU := func(v string) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: q(v)}
		}
	}
	if _, err := c.CoreV1().Pods("quota").Create(ctx, pod("a", withCPU("600m")), metav1.CreateOptions{}); err != nil {
		t.Fatalf("first pod: %v", err)
	}
	// Usage is recorded by the request itself, not later by a controller.
	if u := used(t, c, "quota", "compute", corev1.ResourceRequestsCPU); u != "600m" {
		t.Errorf("used requests.cpu = %s right after the create, want 600m", u)
	}
	if u := used(t, c, "quota", "compute", corev1.ResourcePods); u != "1" {
		t.Errorf("used pods = %s, want 1", u)
	}
	_, err := c.CoreV1().Pods("quota").Create(ctx, pod("b", withCPU("600m")), metav1.CreateOptions{})
	wantStatus(t, err, 403, `pods "b" is forbidden: exceeded quota: compute, requested: requests.cpu=600m, used: requests.cpu=600m, limited: requests.cpu=1`)
	_, err = c.CoreV1().Pods("quota").Create(ctx, pod("c"), metav1.CreateOptions{})
	wantStatus(t, err, 403, `pods "c" is forbidden: failed quota: compute: must specify requests.cpu for: c`)
	// A dry run is checked but not charged.
	if _, err := c.CoreV1().Pods("quota").Create(ctx, pod("dry", withCPU("100m")), metav1.CreateOptions{DryRun: []string{"All"}}); err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if u := used(t, c, "quota", "compute", corev1.ResourceRequestsCPU); u != "600m" {
		t.Errorf("dry run charged the quota: used requests.cpu = %s", u)
	}
	// Object counts of any resource.
	err = createDeployment(ctx, c, "quota", "web")
	wantStatus(t, err, 403, `deployments.apps "web" is forbidden: exceeded quota: compute, requested: count/deployments.apps=1, used: count/deployments.apps=0, limited: count/deployments.apps=0`)

	// Concurrent creates never overrun the quota.
	namespace(t, c, "quota-race", nil)
	createQuota(t, c, "quota-race", "svc", corev1.ResourceList{corev1.ResourceServices: q("3")})
	var ok, refused atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.CoreV1().Services("quota-race").Create(ctx, &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("s%d", i)},
				Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
			}, metav1.CreateOptions{})
			switch {
			case err == nil:
				ok.Add(1)
			case apierrors.IsForbidden(err):
				refused.Add(1)
			default:
				t.Errorf("create service: %v", err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 3 || refused.Load() != 5 {
		t.Fatalf("8 concurrent services under services=3: %d created, %d refused", ok.Load(), refused.Load())
	}
	list, err := c.CoreV1().Services("quota-race").List(ctx, metav1.ListOptions{})
	if err != nil || len(list.Items) != 3 {
		t.Fatalf("services stored: %d, %v", len(list.Items), err)
	}
	// Deletions are recounted by the controller.
	if err := c.CoreV1().Services("quota-race").Delete(ctx, list.Items[0].Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "usage after delete", 15*time.Second, func() (bool, error) {
		return used(t, c, "quota-race", "svc", corev1.ResourceServices) == "2", nil
	})
}
