package hollow_test

import (
	"context"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/nodeagent/hollow"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

func TestHollowNodes(t *testing.T) {
	s := testserver.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := hollow.Start(ctx, s.Config, hollow.Options{Nodes: 3, CPU: "8", Memory: "32Gi", Pods: "50", Labels: map[string]string{"pool": "hollow"}, LeaseInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()

	nodes, err := s.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "pool=hollow"})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != 3 {
		t.Fatalf("got %d nodes, want 3", len(nodes.Items))
	}
	for _, n := range nodes.Items {
		if got := n.Status.Allocatable.Cpu().String(); got != "8" {
			t.Errorf("%s allocatable cpu = %s, want 8", n.Name, got)
		}
		if got := n.Status.Allocatable.Pods().Value(); got != 50 {
			t.Errorf("%s allocatable pods = %d, want 50", n.Name, got)
		}
		if n.Labels[corev1.LabelHostname] != n.Name {
			t.Errorf("%s hostname label = %q", n.Name, n.Labels[corev1.LabelHostname])
		}
		ready := false
		for _, c := range n.Status.Conditions {
			ready = ready || (c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue)
		}
		if !ready || len(n.Status.Addresses) == 0 {
			t.Errorf("%s not Ready or without addresses: %+v", n.Name, n.Status)
		}
	}

	// Leases exist and are renewed.
	l1, err := s.Client.CoordinationV1().Leases(hollow.LeaseNamespace).Get(ctx, "hollow-node-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l1.Spec.HolderIdentity == nil || *l1.Spec.HolderIdentity != "hollow-node-1" {
		t.Fatalf("lease holder = %v", l1.Spec.HolderIdentity)
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		l2, err := s.Client.CoordinationV1().Leases(hollow.LeaseNamespace).Get(ctx, "hollow-node-1", metav1.GetOptions{})
		return err == nil && l2.Spec.RenewTime.After(l1.Spec.RenewTime.Time), nil
	})
	if err != nil {
		t.Fatalf("lease not renewed: %v", err)
	}

	// A pod bound to a hollow node becomes Running and Ready with an IP.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"},
		Spec:       corev1.PodSpec{NodeName: "hollow-node-2", Containers: []corev1.Container{{Name: "c", Image: "nginx"}}},
	}
	if _, err := s.Client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var got *corev1.Pod
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err = s.Client.CoreV1().Pods("default").Get(ctx, "p", metav1.GetOptions{})
		return err == nil && got.Status.Phase == corev1.PodRunning, nil
	})
	if err != nil {
		t.Fatalf("pod not running: %v (%+v)", err, got.Status)
	}
	if got.Status.PodIP == "" || got.Status.HostIP == "" || len(got.Status.ContainerStatuses) != 1 || !got.Status.ContainerStatuses[0].Ready {
		t.Fatalf("incomplete status: %+v", got.Status)
	}
	readyCond := false
	for _, c := range got.Status.Conditions {
		readyCond = readyCond || (c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue)
	}
	if !readyCond {
		t.Fatalf("pod not Ready: %+v", got.Status.Conditions)
	}

	// Graceful deletion is finished by the node.
	if err := s.Client.CoreV1().Pods("default").Delete(ctx, "p", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := s.Client.CoreV1().Pods("default").Get(ctx, "p", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatalf("pod not removed after graceful delete: %v", err)
	}

	// A pod bound to another node is left alone.
	other := pod.DeepCopy()
	other.Name, other.Spec.NodeName = "q", "real-node"
	if _, err := s.Client.CoreV1().Pods("default").Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	q, err := s.Client.CoreV1().Pods("default").Get(ctx, "q", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if q.Status.Phase == corev1.PodRunning {
		t.Fatal("pod on a foreign node was reported running")
	}
}
