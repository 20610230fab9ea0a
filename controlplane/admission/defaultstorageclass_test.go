package admission_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testserver"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

func createDeployment(ctx context.Context, c kubernetes.Interface, ns, name string) error {
	labels := map[string]string{"app": name}
	_, err := c.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       pod("x").Spec,
			},
		},
	}, metav1.CreateOptions{})
	return err
}

func testDefaultStorageClass(t *testing.T, s *testserver.Server) {
	ctx := context.Background()
	c := s.Client
	namespace(t, c, "storage", nil)
	claim := func(name string, class *string) *corev1.PersistentVolumeClaim {
		got, err := c.CoreV1().PersistentVolumeClaims("storage").Create(ctx, &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PersistentVolumeClaimSpec{
				StorageClassName: class,
				AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create claim %s: %v", name, err)
		}
		return got
	}
	if got := claim("none", nil); got.Spec.StorageClassName != nil {
		t.Errorf("no default class yet, claim got %q", *got.Spec.StorageClassName)
	}
	sc := func(name string, isDefault bool) {
		t.Helper()
		o := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Provisioner: "example.com/x"}
		if isDefault {
			o.Annotations = map[string]string{"storageclass.kubernetes.io/is-default-class": "true"}
		}
		if _, err := c.StorageV1().StorageClasses().Create(ctx, o, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.StorageV1().StorageClasses().Delete(ctx, name, metav1.DeleteOptions{}) })
	}
	n := 0
	next := func() string { n++; return fmt.Sprintf("auto-%d", n) }
	sc("slow", false)
	sc("standard", true)
	eventually(t, "default class applied", 5*time.Second, func() (bool, error) {
		got := claim(next(), nil)
		return got.Spec.StorageClassName != nil && *got.Spec.StorageClassName == "standard", nil
	})
	// An explicit empty class means "no class" and stays.
	if got := claim("explicit-empty", ptr.To("")); got.Spec.StorageClassName == nil || *got.Spec.StorageClassName != "" {
		t.Errorf("empty class changed to %v", got.Spec.StorageClassName)
	}
	if got := claim("explicit", ptr.To("slow")); *got.Spec.StorageClassName != "slow" {
		t.Errorf("explicit class changed to %q", *got.Spec.StorageClassName)
	}
	// Several defaults: the newest wins (creation timestamps have second
	// precision).
	time.Sleep(1100 * time.Millisecond)
	sc("fast", true)
	eventually(t, "newest default class applied", 5*time.Second, func() (bool, error) {
		got := claim(next(), nil)
		return got.Spec.StorageClassName != nil && *got.Spec.StorageClassName == "fast", nil
	})
}
