package admission_test

import (
	"context"
	"testing"

	"github.com/skiffhq/skiff/internal/testserver"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func testLimitRanger(t *testing.T, s *testserver.Server) {
	ctx := context.Background()
	c := s.Client
	namespace(t, c, "limits", nil)
	q := resource.MustParse
	_, err := c.CoreV1().LimitRanges("limits").Create(ctx, &corev1.LimitRange{
		ObjectMeta: metav1.ObjectMeta{Name: "lr"},
		Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{
			{
				Type:                 corev1.LimitTypeContainer,
				Default:              corev1.ResourceList{corev1.ResourceCPU: q("200m"), corev1.ResourceMemory: q("128Mi")},
				DefaultRequest:       corev1.ResourceList{corev1.ResourceCPU: q("100m")},
				Max:                  corev1.ResourceList{corev1.ResourceCPU: q("1")},
				Min:                  corev1.ResourceList{corev1.ResourceCPU: q("50m")},
				MaxLimitRequestRatio: corev1.ResourceList{corev1.ResourceCPU: q("4")},
			},
			{Type: corev1.LimitTypePod, Max: corev1.ResourceList{corev1.ResourceMemory: q("200Mi")}},
			{Type: corev1.LimitTypePersistentVolumeClaim, Min: corev1.ResourceList{corev1.ResourceStorage: q("1Gi")}, Max: corev1.ResourceList{corev1.ResourceStorage: q("5Gi")}},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	got, err := c.CoreV1().Pods("limits").Create(ctx, pod("defaults"), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod: %v", err)
	}
	r := got.Spec.Containers[0].Resources
	if r.Limits.Cpu().String() != "200m" || r.Limits.Memory().String() != "128Mi" || r.Requests.Cpu().String() != "100m" || r.Requests.Memory().String() != "128Mi" {
		t.Errorf("defaulted resources = %+v", r)
	}
	if got.Annotations["kubernetes.io/limit-ranger"] != "LimitRanger plugin set: cpu, memory request for container c; cpu, memory limit for container c" {
		t.Errorf("annotation = %q", got.Annotations["kubernetes.io/limit-ranger"])
	}

	res := func(req, lim string) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources = corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: q(req)},
				Limits:   corev1.ResourceList{corev1.ResourceCPU: q(lim)},
			}
		}
	}
	_, err = c.CoreV1().Pods("limits").Create(ctx, pod("too-big", res("1", "2")), metav1.CreateOptions{})
	wantStatus(t, err, 403, `pods "too-big" is forbidden: maximum cpu usage per Container is 1, but limit is 2`)

	_, err = c.CoreV1().Pods("limits").Create(ctx, pod("ratio", res("100m", "800m")), metav1.CreateOptions{})
	wantStatus(t, err, 403, `pods "ratio" is forbidden: cpu max limit to request ratio per Container is 4, but provided ratio is 8.000000`)

	_, err = c.CoreV1().Pods("limits").Create(ctx, pod("tiny", res("10m", "20m")), metav1.CreateOptions{})
	wantStatus(t, err, 403, `pods "tiny" is forbidden: minimum cpu usage per Container is 50m, but request is 10m`)

	// Pod limits: two containers of 128Mi each exceed 200Mi per pod.
	_, err = c.CoreV1().Pods("limits").Create(ctx, pod("two", func(p *corev1.Pod) {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "d", Image: "busybox"})
	}), metav1.CreateOptions{})
	wantStatus(t, err, 403, `pods "two" is forbidden: maximum memory usage per Pod is 200Mi, but limit is 256Mi`)

	pvc := func(name, size string) *corev1.PersistentVolumeClaim {
		return &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: q(size)}},
			},
		}
	}
	_, err = c.CoreV1().PersistentVolumeClaims("limits").Create(ctx, pvc("huge", "10Gi"), metav1.CreateOptions{})
	wantStatus(t, err, 403, `persistentvolumeclaims "huge" is forbidden: maximum storage usage per PersistentVolumeClaim is 5Gi, but request is 10Gi`)
	_, err = c.CoreV1().PersistentVolumeClaims("limits").Create(ctx, pvc("small", "100Mi"), metav1.CreateOptions{})
	wantStatus(t, err, 403, `persistentvolumeclaims "small" is forbidden: minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 100Mi`)
	if _, err := c.CoreV1().PersistentVolumeClaims("limits").Create(ctx, pvc("fine", "2Gi"), metav1.CreateOptions{}); err != nil {
		t.Errorf("2Gi claim: %v", err)
	}
}
