package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// With the ingress add-on on, the server creates the default `skiff`
// IngressClass, so an Ingress written without a class (kubectl create
// ingress, most charts) is given it at admission and served, as on k3s.
func TestDefaultIngressClassServesClasslessIngress(t *testing.T) {
	s := testserver.Start(t, func(c *server.Config) { c.IngressHTTPAddress = "127.0.0.1:0" })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var class *networkingv1.IngressClass
	for {
		var err error
		if class, err = s.Client.NetworkingV1().IngressClasses().Get(ctx, server.IngressClassName, metav1.GetOptions{}); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("IngressClass %s never appeared: %v", server.IngressClassName, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if class.Spec.Controller != "skiff.io/ingress-controller" || class.Annotations["ingressclass.kubernetes.io/is-default-class"] != "true" {
		t.Fatalf("IngressClass = controller %q, annotations %v", class.Spec.Controller, class.Annotations)
	}
	ing, err := s.Client.NetworkingV1().Ingresses("default").Create(ctx, &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: "classless"},
		Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{Host: "classless.example.com", IngressRuleValue: networkingv1.IngressRuleValue{
			HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: ptr.To(networkingv1.PathTypePrefix),
				Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}}}},
		}}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ing.Spec.IngressClassName == nil || *ing.Spec.IngressClassName != server.IngressClassName {
		t.Fatalf("ingressClassName = %v, want %q from the default class", ing.Spec.IngressClassName, server.IngressClassName)
	}
	// Served: the route exists (503, its Service has no endpoints), where
	// an Ingress the add-on ignores would answer 404 "no Ingress rule".
	addr := s.Ingress().Addrs()["http"]
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/", addr), nil)
		req.Host = "classless.example.com"
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable {
				break
			}
			err = fmt.Errorf("%d %s", resp.StatusCode, b)
		}
		if ctx.Err() != nil {
			t.Fatalf("classless Ingress never routed: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
