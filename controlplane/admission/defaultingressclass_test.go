package admission_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testserver"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func testDefaultIngressClass(t *testing.T, s *testserver.Server) {
	ctx := context.Background()
	c := s.Client
	namespace(t, c, "ingress", nil)
	create := func(name string, class *string, annotations map[string]string) *networkingv1.Ingress {
		t.Helper()
		got, err := c.NetworkingV1().Ingresses("ingress").Create(ctx, &networkingv1.Ingress{
			ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
			Spec: networkingv1.IngressSpec{IngressClassName: class, DefaultBackend: &networkingv1.IngressBackend{
				Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create ingress %s: %v", name, err)
		}
		return got
	}
	if got := create("none", nil, nil); got.Spec.IngressClassName != nil {
		t.Errorf("no default class yet, ingress got %q", *got.Spec.IngressClassName)
	}
	class := func(name string, isDefault bool) {
		t.Helper()
		o := &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: networkingv1.IngressClassSpec{Controller: "example.com/" + name}}
		if isDefault {
			o.Annotations = map[string]string{"ingressclass.kubernetes.io/is-default-class": "true"}
		}
		if _, err := c.NetworkingV1().IngressClasses().Create(ctx, o, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.NetworkingV1().IngressClasses().Delete(ctx, name, metav1.DeleteOptions{}) })
	}
	n := 0
	next := func() string { n++; return fmt.Sprintf("auto-%d", n) }
	class("internal", false)
	class("public", true)
	eventually(t, "default ingress class applied", 5*time.Second, func() (bool, error) {
		got := create(next(), nil, nil)
		return got.Spec.IngressClassName != nil && *got.Spec.IngressClassName == "public", nil
	})
	// An explicit class, and the deprecated annotation, are left alone.
	if got := create("explicit", ptr.To("internal"), nil); *got.Spec.IngressClassName != "internal" {
		t.Errorf("explicit class changed to %q", *got.Spec.IngressClassName)
	}
	if got := create("legacy", nil, map[string]string{"kubernetes.io/ingress.class": "internal"}); got.Spec.IngressClassName != nil {
		t.Errorf("ingress with the legacy class annotation got class %q", *got.Spec.IngressClassName)
	}
	// Several defaults: the newest wins (creation timestamps have second
	// precision).
	time.Sleep(1100 * time.Millisecond)
	class("edge", true)
	eventually(t, "newest default ingress class applied", 5*time.Second, func() (bool, error) {
		got := create(next(), nil, nil)
		return got.Spec.IngressClassName != nil && *got.Spec.IngressClassName == "edge", nil
	})
	// Only creation is defaulted: an update that leaves the class empty
	// keeps it empty.
	none, err := c.NetworkingV1().Ingresses("ingress").Get(ctx, "none", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	none.Labels = map[string]string{"touched": "yes"}
	if got, err := c.NetworkingV1().Ingresses("ingress").Update(ctx, none, metav1.UpdateOptions{}); err != nil || got.Spec.IngressClassName != nil {
		t.Errorf("update of a class-less ingress: %v, class %v", err, got.Spec.IngressClassName)
	}
}
