package namespace_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testserver"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
var widgets = schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}

func TestNamespaceDeletion(t *testing.T) {
	s := testserver.Start(t)
	cs := s.Client
	ctx := context.Background()
	const ns = "doomed"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "plain"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Held by a finalizer so that the namespace stays Terminating for a while.
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "held", Finalizers: []string{"example.com/hold"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	one := int32(1)
	labels := map[string]string{"app": "web"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}},
			},
		},
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	withCR := createWidget(t, s, ns)

	if err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deployment and configmap deleted", func() bool {
		_, e1 := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		_, e2 := cs.CoreV1().ConfigMaps(ns).Get(ctx, "plain", metav1.GetOptions{})
		return apierrors.IsNotFound(e1) && apierrors.IsNotFound(e2)
	})
	if withCR {
		eventually(t, "custom resource deleted", func() bool {
			_, err := s.Dynamic.Resource(widgets).Namespace(ns).Get(ctx, "w1", metav1.GetOptions{})
			return apierrors.IsNotFound(err)
		})
	}
	// Terminating: no new content.
	_, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "late"}}, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "because it is being terminated") {
		t.Fatalf("create in terminating namespace: want 403, got %v", err)
	}
	eventually(t, "conditions report the remaining finalizer", func() bool {
		n, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil || n.Status.Phase != corev1.NamespaceTerminating {
			return false
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NamespaceFinalizersRemaining && c.Status == corev1.ConditionTrue &&
				strings.Contains(c.Message, "example.com/hold in 1 resource instances") {
				return true
			}
		}
		return false
	})
	p, _ := json.Marshal(map[string]any{"metadata": map[string]any{"finalizers": nil}})
	if _, err := cs.CoreV1().ConfigMaps(ns).Patch(ctx, "held", types.MergePatchType, p, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "namespace gone", func() bool {
		_, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
}

// createWidget defines a namespaced custom resource and creates one in ns;
// false when the server does not serve custom resources yet.
func createWidget(t *testing.T, s *testserver.Server, ns string) bool {
	t.Helper()
	ctx := context.Background()
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": "widgets.example.com"},
		"spec": map[string]any{
			"group": "example.com", "scope": "Namespaced",
			"names": map[string]any{"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
			"versions": []any{map[string]any{"name": "v1", "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}},
		},
	}}
	if _, err := s.Dynamic.Resource(crdGVR).Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Logf("custom resources not available (%v); skipping them", err)
		return false
	}
	w := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "example.com/v1", "kind": "Widget", "metadata": map[string]any{"name": "w1"},
	}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := s.Dynamic.Resource(widgets).Namespace(ns).Create(ctx, w, metav1.CreateOptions{})
		if err == nil {
			return true
		}
		if time.Now().After(deadline) {
			t.Logf("custom resource not served (%v); skipping it", err)
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestNamespaceDeletionThousandObjects deletes a namespace holding 1,000
// objects of five kinds (ConfigMaps, Secrets, Services with cluster IPs,
// unscheduled Pods, ServiceAccounts besides the default one): the
// controller empties it, then removes its finalizer, and nothing of it is
// left.
func TestNamespaceDeletionThousandObjects(t *testing.T) {
	s := testserver.Start(t)
	cs := s.Client
	ctx := context.Background()
	const ns, perKind = "thousand", 200
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	create := func(i int) error {
		name := fmt.Sprintf("o-%d", i)
		meta := metav1.ObjectMeta{Name: name}
		var err error
		switch i % 5 {
		case 0:
			_, err = cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: meta, Data: map[string]string{"k": name}}, metav1.CreateOptions{})
		case 1:
			_, err = cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: meta, StringData: map[string]string{"k": name}}, metav1.CreateOptions{})
		case 2:
			_, err = cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: meta, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{})
		case 3:
			_, err = cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: meta, Spec: corev1.PodSpec{
				SchedulerName: "nobody", // stays unscheduled: no node, no agent
				Containers:    []corev1.Container{{Name: "c", Image: "busybox"}}}}, metav1.CreateOptions{})
		case 4:
			_, err = cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: meta}, metav1.CreateOptions{})
		}
		return err
	}
	// The pods need the namespace's default ServiceAccount first.
	eventually(t, "default ServiceAccount", func() bool {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	})
	var wg sync.WaitGroup
	errs := make(chan error, 5*perKind)
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := create(i); err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := range 5 * perKind {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	counts := func() [5]int {
		var n [5]int
		if l, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{}); err == nil {
			n[0] = len(l.Items)
		}
		if l, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); err == nil {
			n[1] = len(l.Items)
		}
		if l, err := cs.CoreV1().Services(ns).List(ctx, metav1.ListOptions{}); err == nil {
			n[2] = len(l.Items)
		}
		if l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err == nil {
			n[3] = len(l.Items)
		}
		if l, err := cs.CoreV1().ServiceAccounts(ns).List(ctx, metav1.ListOptions{}); err == nil {
			n[4] = len(l.Items)
		}
		return n
	}
	// kube-root-ca.crt and the default ServiceAccount come on top.
	if got := counts(); got[0] < perKind || got[1] < perKind || got[2] != perKind || got[3] != perKind || got[4] < perKind {
		t.Fatalf("before the deletion: %v objects per kind, want %d each", got, perKind)
	}

	start := time.Now()
	if err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("namespace still there after 2 minutes (%v); left per kind: %v", err, counts())
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("namespace with %d objects deleted in %v", 5*perKind, time.Since(start).Round(time.Millisecond))
	if got := counts(); got != [5]int{} {
		t.Fatalf("after the namespace went: %v objects per kind remain", got)
	}
}
