package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/addons/federation"
	"github.com/skiffhq/skiff/addons/federation/apis/v1alpha1"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

// startHostWithFederation starts a host (no deployment controller) with
// namespaces credNS and ns and the federation add-on on short intervals.
func startHostWithFederation(ctx context.Context, t *testing.T) *testserver.Server {
	t.Helper()
	host := testserver.Start(t, func(c *server.Config) { c.Controllers = []string{"*", "-deployment-controller"} })
	for _, n := range []string{credNS, ns} {
		if _, err := host.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	fed, err := federation.New(federation.Options{
		Config:            host.Config,
		HeartbeatInterval: 300 * time.Millisecond,
		FailureGrace:      1500 * time.Millisecond,
		RecoveryGrace:     1500 * time.Millisecond,
		MemberTimeout:     2 * time.Second,
		ResyncInterval:    500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	fctx, fcancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		if err := fed.Run(fctx); err != nil {
			t.Errorf("federation: %v", err)
		}
	}()
	t.Cleanup(func() { fcancel(); <-stopped })
	eventually(t, "federation ready", 30*time.Second, func() error {
		if !fed.Ready() {
			return errors.New("not ready")
		}
		return nil
	})
	return host
}

func envFromDeployment(name string, configMaps ...string) *appsv1.Deployment {
	var ef []corev1.EnvFromSource
	for _, c := range configMaps {
		ef = append(ef, corev1.EnvFromSource{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: c}}})
	}
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](1),
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}}, Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: name, Image: name + ":1", EnvFrom: ef}}}},
	}}
}

// TestFederationCleanup covers what federation removes from a member
// beyond a source's own copy, with one host and one member: ConfigMaps a
// Deployment stops referencing (kept while another propagated Deployment
// needs them), and everything federation made on a member whose
// MemberCluster is deleted (the member's own objects and the namespace
// stay); a deleted member that does not answer is let go after the
// failure grace with a Warning event.
func TestFederationCleanup(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	host := startHostWithFederation(ctx, t)
	m1 := startMember(ctx, t, host, "m1")
	waitMemberReady(ctx, t, host, "m1", metav1.ConditionTrue, "Healthy")
	eventually(t, "cleanup finalizer on m1", 10*time.Second, func() error {
		mc, err := getMember(ctx, host, "m1")
		if err != nil {
			return err
		}
		if !slices.Contains(mc.Finalizers, v1alpha1.CleanupFinalizer) {
			return fmt.Errorf("finalizers %v", mc.Finalizers)
		}
		return nil
	})

	for _, n := range []string{"cfg-a", "cfg-b"} {
		if _, err := host.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: n}, Data: map[string]string{"k": n}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	create(ctx, t, host, "propagationpolicies", ns, v1alpha1.PropagationPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: v1alpha1.KindPropagation},
		ObjectMeta: metav1.ObjectMeta{Name: "deployments", Namespace: ns},
		Spec: v1alpha1.PropagationSpec{
			ResourceSelectors: []v1alpha1.ResourceSelector{{APIVersion: "apps/v1", Kind: "Deployment"}},
			Placement:         v1alpha1.Placement{ClusterNames: []string{"m1"}},
		},
	})
	for _, d := range []*appsv1.Deployment{envFromDeployment("web", "cfg-a"), envFromDeployment("api", "cfg-a")} {
		if _, err := host.Client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// A ConfigMap of the member's own, which federation must never touch
	// (once federation created the namespace there).
	eventually(t, "member-own created on m1", 30*time.Second, func() error {
		_, err := m1.srv.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "member-own"}}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	})
	requiredBy := func(name string) (string, error) {
		cm, err := m1.srv.Client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		return cm.Annotations[v1alpha1.RequiredByAnnotation], nil
	}
	eventually(t, "cfg-a on m1 required by web and api", 30*time.Second, func() error {
		rb, err := requiredBy("cfg-a")
		if err != nil {
			return err
		}
		if !strings.Contains(rb, "/api") || !strings.Contains(rb, "/web") {
			return fmt.Errorf("required-by %q", rb)
		}
		return nil
	})

	t.Run("a cluster-scoped object gets a ClusterResourceBinding", func(t *testing.T) {
		if _, err := host.Client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "fed-reader"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		create(ctx, t, host, "clusterpropagationpolicies", "", v1alpha1.PropagationPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: v1alpha1.KindClusterPropagat},
			ObjectMeta: metav1.ObjectMeta{Name: "reader"},
			Spec: v1alpha1.PropagationSpec{
				ResourceSelectors: []v1alpha1.ResourceSelector{{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole", Name: "fed-reader"}},
				Placement:         v1alpha1.Placement{ClusterNames: []string{"m1"}},
			},
		})
		eventually(t, "ClusterRole on m1 and its ClusterResourceBinding", 30*time.Second, func() error {
			if _, err := m1.srv.Client.RbacV1().ClusterRoles().Get(ctx, "fed-reader", metav1.GetOptions{}); err != nil {
				return err
			}
			u, err := host.Dynamic.Resource(v1alpha1.ClusterResourceBindingGVR).Get(ctx, "fed-reader-clusterrole", metav1.GetOptions{})
			if err != nil {
				return err
			}
			var b v1alpha1.ResourceBinding
			if err := v1alpha1.FromUnstructured(u, &b); err != nil {
				return err
			}
			if u.GetKind() != v1alpha1.KindClusterBinding || b.Spec.Resource.Kind != "ClusterRole" || b.Spec.Policy.Name != "reader" ||
				len(b.Spec.Clusters) != 1 || b.Spec.Clusters[0].Name != "m1" || len(b.Status.Members) != 1 || !b.Status.Members[0].Applied {
				return fmt.Errorf("binding %s %+v", u.GetKind(), b)
			}
			return nil
		})
	})

	t.Run("a dependency the Deployment stops using leaves once nothing needs it", func(t *testing.T) {
		setEnvFrom := func(name string, cms ...string) {
			t.Helper()
			// Federation writes the host object's status and finalizer too.
			err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
				d, err := host.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				d.Spec.Template.Spec.Containers[0].EnvFrom = envFromDeployment(name, cms...).Spec.Template.Spec.Containers[0].EnvFrom
				_, err = host.Client.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		// web moves from cfg-a to cfg-b: cfg-b follows, cfg-a stays for api.
		setEnvFrom("web", "cfg-b")
		eventually(t, "cfg-b on m1, cfg-a required by api only", 30*time.Second, func() error {
			if _, err := requiredBy("cfg-b"); err != nil {
				return err
			}
			rb, err := requiredBy("cfg-a")
			if err != nil {
				return err
			}
			if strings.Contains(rb, "/web") || !strings.Contains(rb, "/api") {
				return fmt.Errorf("cfg-a required-by %q", rb)
			}
			return nil
		})
		// api drops it too: the copy goes; the member's own ConfigMap stays.
		setEnvFrom("api")
		eventually(t, "cfg-a gone from m1", 30*time.Second, func() error {
			if _, err := requiredBy("cfg-a"); !apierrors.IsNotFound(err) {
				return fmt.Errorf("cfg-a still on m1 (%v)", err)
			}
			return nil
		})
		if _, err := requiredBy("member-own"); err != nil {
			t.Fatalf("the member's own ConfigMap: %v", err)
		}
		if _, err := host.Client.CoreV1().ConfigMaps(ns).Get(ctx, "cfg-a", metav1.GetOptions{}); err != nil {
			t.Fatalf("the host's cfg-a: %v", err)
		}
	})

	t.Run("deleting a reachable member removes what federation made there", func(t *testing.T) {
		if err := host.Dynamic.Resource(v1alpha1.MemberClusterGVR).Delete(ctx, "m1", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "MemberCluster m1 gone", 30*time.Second, func() error {
			if _, err := getMember(ctx, host, "m1"); !apierrors.IsNotFound(err) {
				return fmt.Errorf("still there (%v)", err)
			}
			return nil
		})
		for _, d := range []string{"web", "api"} {
			if _, err := m1.srv.Client.AppsV1().Deployments(ns).Get(ctx, d, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("Deployment %s still on m1 (%v)", d, err)
			}
		}
		if _, err := requiredBy("cfg-b"); !apierrors.IsNotFound(err) {
			t.Errorf("cfg-b still on m1 (%v)", err)
		}
		if _, err := requiredBy("member-own"); err != nil {
			t.Errorf("the member's own ConfigMap: %v", err)
		}
		if _, err := m1.srv.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
			t.Errorf("namespace %s on m1: %v", ns, err)
		}
		if _, err := m1.srv.Client.RbacV1().ClusterRoles().Get(ctx, "fed-reader", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("ClusterRole fed-reader still on m1 (%v)", err)
		}
		expectEvent(ctx, t, host, "m1", "MemberCleanedUp")
		// The host's Deployments stay, now placed nowhere.
		if _, err := host.Client.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{}); err != nil {
			t.Fatalf("host Deployment: %v", err)
		}
	})

	t.Run("deleting an unreachable member does not block", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closed := ln.Addr().String()
		ln.Close()
		kc, err := os.ReadFile(m1.srv.Kubeconfig())
		if err != nil {
			t.Fatal(err)
		}
		createSecret(ctx, t, host, "dead-credentials", map[string][]byte{"kubeconfig": kc})
		createMember(ctx, t, host, "dead", "https://"+closed, "dead-credentials", nil)
		eventually(t, "cleanup finalizer on dead", 10*time.Second, func() error {
			mc, err := getMember(ctx, host, "dead")
			if err != nil {
				return err
			}
			if !slices.Contains(mc.Finalizers, v1alpha1.CleanupFinalizer) {
				return fmt.Errorf("finalizers %v", mc.Finalizers)
			}
			return nil
		})
		if err := host.Dynamic.Resource(v1alpha1.MemberClusterGVR).Delete(ctx, "dead", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "MemberCluster dead gone", 30*time.Second, func() error {
			if _, err := getMember(ctx, host, "dead"); !apierrors.IsNotFound(err) {
				return fmt.Errorf("still there (%v)", err)
			}
			return nil
		})
		expectEvent(ctx, t, host, "dead", "MemberCleanupSkipped")
	})
}

// expectEvent waits for an event with reason on MemberCluster name.
func expectEvent(ctx context.Context, t *testing.T, host *testserver.Server, name, reason string) {
	t.Helper()
	eventually(t, "event "+reason+" on "+name, 20*time.Second, func() error {
		evs, err := host.Client.CoreV1().Events("").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
		if err != nil {
			return err
		}
		var seen []string
		for _, e := range evs.Items {
			if e.InvolvedObject.Kind == v1alpha1.KindMemberCluster && e.Reason == reason {
				return nil
			}
			seen = append(seen, e.Reason)
		}
		return fmt.Errorf("events %v", seen)
	})
}
