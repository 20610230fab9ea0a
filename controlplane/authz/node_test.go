package authz_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testserver"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

func podOn(name, node, secret, cm string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			NodeName:   node,
			Containers: []corev1.Container{{Name: "c", Image: "busybox", EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: cm}}}}}},
			Volumes:    []corev1.Volume{{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secret}}}},
		},
	}
}

// testNodeAuthorizer: a node reads only what its own pods reference and
// writes only its own Node, Lease and pods' status.
func testNodeAuthorizer(t *testing.T, s *testserver.Server) {
	ctx := context.Background()
	const ns = "nodes-test"
	mustCreateNS(t, s, ns)
	for _, name := range []string{"secret-a", "secret-b", "unused"} {
		if _, err := s.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: map[string]string{"k": "v"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"cm-a", "cm-b"} {
		if _, err := s.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []*corev1.Pod{podOn("pod-a", "node-a", "secret-a", "cm-a"), podOn("pod-b", "node-b", "secret-b", "cm-b")} {
		if _, err := s.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	a := as(t, s, "system:node:node-a", "system:nodes")
	noRel := `: no relationship found between node 'node-a' and this object`

	// Reads through the graph.
	expect(t, a, "GET", "/api/v1/namespaces/"+ns+"/secrets/secret-a", "")
	expect(t, a, "GET", "/api/v1/namespaces/"+ns+"/configmaps/cm-a", "")
	expect(t, a, "GET", "/api/v1/namespaces/"+ns+"/secrets/secret-b", `secrets "secret-b" is forbidden: User "system:node:node-a" cannot get resource "secrets" in API group "" in the namespace "nodes-test"`+noRel)
	expect(t, a, "GET", "/api/v1/namespaces/"+ns+"/configmaps/cm-b", `configmaps "cm-b" is forbidden: User "system:node:node-a" cannot get resource "configmaps" in API group "" in the namespace "nodes-test"`+noRel)
	expect(t, a, "GET", "/api/v1/namespaces/"+ns+"/secrets/unused", `secrets "unused" is forbidden: User "system:node:node-a" cannot get resource "secrets" in API group "" in the namespace "nodes-test"`+noRel)
	expect(t, a, "GET", "/api/v1/namespaces/"+ns+"/secrets", `secrets is forbidden: User "system:node:node-a" cannot list resource "secrets" in API group "" in the namespace "nodes-test": No Object name found`)
	expect(t, a, "POST", "/api/v1/namespaces/"+ns+"/secrets", `secrets is forbidden: User "system:node:node-a" cannot create resource "secrets" in API group "" in the namespace "nodes-test": can only read resources of this type`)
	// List and watch of one related object by a metadata.name field
	// selector, as the agent watches its pods' ConfigMaps and Secrets.
	expect(t, a, "GET", "/api/v1/namespaces/"+ns+"/secrets?fieldSelector=metadata.name%3Dsecret-b", `secrets "secret-b" is forbidden: User "system:node:node-a" cannot list resource "secrets" in API group "" in the namespace "nodes-test"`+noRel)
	expect(t, a, "GET", "/api/v1/namespaces/"+ns+"/configmaps?watch=1&timeoutSeconds=1&fieldSelector=metadata.name%3Dcm-b", `configmaps "cm-b" is forbidden: User "system:node:node-a" cannot watch resource "configmaps" in API group "" in the namespace "nodes-test"`+noRel)
	expect(t, a, "GET", "/api/v1/namespaces/"+ns+"/persistentvolumeclaims?fieldSelector=metadata.name%3Dany", `persistentvolumeclaims "any" is forbidden: User "system:node:node-a" cannot list resource "persistentvolumeclaims" in API group "" in the namespace "nodes-test": can only get individual resources of this type`)
	one := metav1.ListOptions{FieldSelector: "metadata.name=secret-a"}
	list, err := a.cs.CoreV1().Secrets(ns).List(ctx, one)
	if err != nil || len(list.Items) != 1 || list.Items[0].Name != "secret-a" {
		t.Fatalf("node list of its secret by name: %v, %v", list, err)
	}
	// The name a field selector gives a request is for authorization
	// only: a list across namespaces by name (the root CA publisher's) is
	// still a list.
	all, err := s.Client.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=cm-a"})
	if err != nil || len(all.Items) != 1 || all.Items[0].Namespace != ns {
		t.Fatalf("cluster-wide list of configmaps by name: %v, %v", all, err)
	}
	w, err := a.cs.CoreV1().ConfigMaps(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=cm-a", ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatalf("node watch of its configmap by name: %v", err)
	}
	if _, err := s.Client.CoreV1().ConfigMaps(ns).Update(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm-a"}, Data: map[string]string{"k": "changed"}}, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-w.ResultChan():
		if cm, ok := ev.Object.(*corev1.ConfigMap); !ok || cm.Name != "cm-a" || cm.Data["k"] != "changed" {
			t.Fatalf("watch event %s %#v, want cm-a modified", ev.Type, ev.Object)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no watch event for cm-a")
	}
	w.Stop()
	// A user named like a node but outside system:nodes gets nothing.
	// (Impersonated: the server issues one client certificate per user,
	// and node-a's is the one above, with its group.)
	fake := impersonating(t, s, "system:node:node-a")
	expect(t, fake, "GET", "/api/v1/namespaces/"+ns+"/secrets/secret-a", `secrets "secret-a" is forbidden: User "system:node:node-a" cannot get resource "secrets" in API group "" in the namespace "nodes-test"`)

	// Pods: read anywhere, status only for its own.
	expect(t, a, "GET", "/api/v1/pods", "")
	expect(t, a, "GET", "/api/v1/namespaces/"+ns+"/pods/pod-b", "")
	podA, err := a.cs.CoreV1().Pods(ns).Get(ctx, "pod-a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	podA.Status.Phase = corev1.PodRunning
	if _, err := a.cs.CoreV1().Pods(ns).UpdateStatus(ctx, podA, metav1.UpdateOptions{}); err != nil {
		t.Errorf("node-a updating its pod's status: %v", err)
	}
	podB, err := a.cs.CoreV1().Pods(ns).Get(ctx, "pod-b", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	podB.Status.Phase = corev1.PodRunning
	if _, err := a.cs.CoreV1().Pods(ns).UpdateStatus(ctx, podB, metav1.UpdateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("node-a updating node-b's pod status: %v, want forbidden", err)
	}
	if err := a.cs.CoreV1().Pods(ns).Delete(ctx, "pod-b", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("node-a deleting node-b's pod: %v, want forbidden", err)
	}
	// Creating pods: mirror pods for itself only (NodeRestriction).
	mirror := podOn("static-a", "node-b", "secret-a", "cm-a")
	mirror.Annotations = map[string]string{"kubernetes.io/config.mirror": "x"}
	if _, err := a.cs.CoreV1().Pods(ns).Create(ctx, mirror, metav1.CreateOptions{}); !apierrors.IsForbidden(err) || !contains(err, `node "node-a" can only create pods with spec.nodeName set to itself`) {
		t.Errorf("mirror pod for another node: %v", err)
	}

	// Its own Node only.
	if _, err := a.cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-b"}}, metav1.CreateOptions{}); !apierrors.IsForbidden(err) || !contains(err, `node "node-a" is not allowed to modify node "node-b"`) {
		t.Errorf("node-a creating node-b: %v", err)
	}
	if _, err := a.cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("node-a registering itself: %v", err)
	}
	if _, err := s.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-b"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Controllers (node IPAM, lifecycle) may write the node meanwhile.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		self, err := a.cs.CoreV1().Nodes().Get(ctx, "node-a", metav1.GetOptions{})
		if err != nil {
			return err
		}
		self.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
		_, err = a.cs.CoreV1().Nodes().UpdateStatus(ctx, self, metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Errorf("node-a updating its status: %v", err)
	}
	expect(t, a, "GET", "/api/v1/nodes/node-b", `nodes "node-b" is forbidden: User "system:node:node-a" cannot get resource "nodes" in API group "" at the cluster scope: node 'node-a' cannot access node 'node-b'`)
	expect(t, a, "DELETE", "/api/v1/nodes/node-b", `nodes "node-b" is forbidden: User "system:node:node-a" cannot delete resource "nodes" in API group "" at the cluster scope: node 'node-a' cannot access node 'node-b'`)

	// Its own Lease only.
	leases := a.cs.CoordinationV1().Leases("kube-node-lease")
	holder := "node-a"
	if _, err := leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}, Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder}}, metav1.CreateOptions{}); err != nil {
		t.Errorf("node-a creating its lease: %v", err)
	}
	if _, err := leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "node-b"}}, metav1.CreateOptions{}); !apierrors.IsForbidden(err) || !contains(err, "can only access node lease with the same name as the requesting node") {
		t.Errorf("node-a creating node-b's lease: %v", err)
	}
	if _, err := leases.Get(ctx, "node-a", metav1.GetOptions{}); err != nil {
		t.Errorf("node-a reading its lease: %v", err)
	}
	expect(t, a, "GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-b", `leases.coordination.k8s.io "node-b" is forbidden: User "system:node:node-a" cannot get resource "leases" in API group "coordination.k8s.io" in the namespace "kube-node-lease": node 'node-a' cannot access lease 'node-b'`)

	// Moving a pod's reference follows: once pod-a is gone, so is access.
	if err := s.Client.CoreV1().Pods(ns).Delete(ctx, "pod-a", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	expect(t, a, "GET", "/api/v1/namespaces/"+ns+"/secrets/secret-a", `secrets "secret-a" is forbidden: User "system:node:node-a" cannot get resource "secrets" in API group "" in the namespace "nodes-test"`+noRel)
}

func contains(err error, s string) bool {
	return err != nil && len(s) > 0 && strings.Contains(err.Error(), s)
}
