package admission_test

import (
	"context"
	"strings"
	"testing"

	"github.com/skiffhq/skiff/internal/testserver"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func testServiceAccount(t *testing.T, s *testserver.Server) {
	ctx := context.Background()
	c := s.Client
	namespace(t, c, "sa", nil)

	got, err := c.CoreV1().Pods("sa").Create(ctx, pod("p1", func(p *corev1.Pod) {
		p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox"}}
	}), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod: %v", err)
	}
	if got.Spec.ServiceAccountName != "default" {
		t.Errorf("serviceAccountName = %q, want default", got.Spec.ServiceAccountName)
	}
	if len(got.Spec.Volumes) != 1 {
		t.Fatalf("volumes = %+v, want the token volume", got.Spec.Volumes)
	}
	v := got.Spec.Volumes[0]
	if !strings.HasPrefix(v.Name, "kube-api-access-") || len(v.Name) != len("kube-api-access-")+5 || v.Projected == nil {
		t.Fatalf("token volume = %+v", v)
	}
	src := v.Projected.Sources
	if len(src) != 3 || src[0].ServiceAccountToken == nil || *src[0].ServiceAccountToken.ExpirationSeconds != 3607 ||
		src[0].ServiceAccountToken.Path != "token" ||
		src[1].ConfigMap == nil || src[1].ConfigMap.Name != "kube-root-ca.crt" || src[1].ConfigMap.Items[0].Key != "ca.crt" ||
		src[2].DownwardAPI == nil || src[2].DownwardAPI.Items[0].FieldRef.FieldPath != "metadata.namespace" {
		t.Fatalf("projected sources = %+v", src)
	}
	for _, cs := range [][]corev1.Container{got.Spec.Containers, got.Spec.InitContainers} {
		m := cs[0].VolumeMounts
		if len(m) != 1 || m[0].Name != v.Name || m[0].MountPath != "/var/run/secrets/kubernetes.io/serviceaccount" || !m[0].ReadOnly {
			t.Errorf("container %s mounts = %+v", cs[0].Name, m)
		}
	}

	// automountServiceAccountToken: false on the pod.
	got, err = c.CoreV1().Pods("sa").Create(ctx, pod("p2", func(p *corev1.Pod) {
		p.Spec.AutomountServiceAccountToken = ptr.To(false)
	}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Spec.Volumes) != 0 || len(got.Spec.Containers[0].VolumeMounts) != 0 {
		t.Errorf("automount=false pod got %+v", got.Spec.Volumes)
	}

	// ... and on the service account.
	if _, err := c.CoreV1().ServiceAccounts("sa").Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: "quiet"}, AutomountServiceAccountToken: ptr.To(false),
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err = c.CoreV1().Pods("sa").Create(ctx, pod("p3", func(p *corev1.Pod) { p.Spec.ServiceAccountName = "quiet" }), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Spec.Volumes) != 0 {
		t.Errorf("service account automount=false pod got %+v", got.Spec.Volumes)
	}

	// A missing service account is refused.
	_, err = c.CoreV1().Pods("sa").Create(ctx, pod("p4", func(p *corev1.Pod) { p.Spec.ServiceAccountName = "ghost" }), metav1.CreateOptions{})
	wantStatus(t, err, 403, `pods "p4" is forbidden: error looking up service account sa/ghost: serviceaccount "ghost" not found`)
}
