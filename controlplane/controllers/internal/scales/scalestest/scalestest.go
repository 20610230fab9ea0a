// Package scalestest gives controller tests a custom resource with a
// scale subresource: the CustomResourceDefinition scalables.scales.test.skiff.dev
// (kind Scalable, namespaced, served as v1) whose spec.replicas is the
// scale, as a third-party workload controller's resource would be.
package scalestest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testserver"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	clientset "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
)

// APIVersion and Kind name the custom resource in references.
const (
	Group      = "scales.test.skiff.dev"
	APIVersion = Group + "/v1"
	Kind       = "Scalable"
)

// Resource is its resource.
var Resource = schema.GroupVersionResource{Group: Group, Version: "v1", Resource: "scalables"}

// CreateCRD creates the definition on s and waits until it is served.
func CreateCRD(t testing.TB, s *testserver.Server) {
	t.Helper()
	ctx := context.Background()
	c, err := clientset.NewForConfig(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	sch := &apiextensionsv1.JSONSchemaProps{Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{
		"spec": {Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"replicas": {Type: "integer", Format: "int32", Minimum: ptr.To(0.0)},
		}},
		"status": {Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"replicas": {Type: "integer"},
			"selector": {Type: "string"},
		}},
	}}
	crd := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: Resource.Resource + "." + Group},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: Group, Scope: apiextensionsv1.NamespaceScoped,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: Resource.Resource, Singular: "scalable", Kind: Kind},
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: sch},
				Subresources: &apiextensionsv1.CustomResourceSubresources{
					Status: &apiextensionsv1.CustomResourceSubresourceStatus{},
					Scale: &apiextensionsv1.CustomResourceSubresourceScale{
						SpecReplicasPath: ".spec.replicas", StatusReplicasPath: ".status.replicas", LabelSelectorPath: ptr.To(".status.selector"),
					},
				},
			}},
		},
	}
	if _, err := c.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := s.Dynamic.Resource(Resource).Namespace("default").List(ctx, metav1.ListOptions{})
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not served: %v", Resource, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Create makes the Scalable ns/name with spec.replicas and a status
// selector of app=<name>.
func Create(t testing.TB, s *testserver.Server, ns, name string, replicas int64) *unstructured.Unstructured {
	t.Helper()
	ctx := context.Background()
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": APIVersion, "kind": Kind,
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     map[string]any{"replicas": replicas},
	}}
	out, err := s.Dynamic.Resource(Resource).Namespace(ns).Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out.Object["status"] = map[string]any{"replicas": replicas, "selector": "app=" + name}
	out, err = s.Dynamic.Resource(Resource).Namespace(ns).UpdateStatus(ctx, out, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Replicas reads spec.replicas of ns/name (-1 when it cannot).
func Replicas(s *testserver.Server, ns, name string) int64 {
	obj, err := s.Dynamic.Resource(Resource).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return -1
	}
	n, found, err := unstructured.NestedInt64(obj.Object, "spec", "replicas")
	if err != nil || !found {
		return -1
	}
	return n
}

// SetReplicas writes spec.replicas of ns/name.
func SetReplicas(t testing.TB, s *testserver.Server, ns, name string, n int64) {
	t.Helper()
	obj, err := s.Dynamic.Resource(Resource).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(obj.Object, n, "spec", "replicas"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Dynamic.Resource(Resource).Namespace(ns).Update(context.Background(), obj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(fmt.Errorf("set replicas of %s/%s: %w", ns, name, err))
	}
}
