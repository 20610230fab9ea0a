package disruption_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/internal/scales/scalestest"
	"github.com/skiffhq/skiff/internal/testserver"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func createNode(t *testing.T, c kubernetes.Interface, name string) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The node IPAM controller writes the new node too (its podCIDR).
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
		_, err = c.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// runningPod creates a pod bound to node and marks it Running and Ready
// (or not) through its status, as a kubelet would.
func runningPod(t *testing.T, c kubernetes.Interface, ns, name, node string, ready bool) {
	t.Helper()
	ctx := context.Background()
	p, err := c.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p.Status.Phase = corev1.PodRunning
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: st, LastTransitionTime: metav1.Now()}}
	if _, err := c.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func createPDB(t *testing.T, c kubernetes.Interface, ns, name string, minAvailable, maxUnavailable *intstr.IntOrString) {
	t.Helper()
	_, err := c.PolicyV1().PodDisruptionBudgets(ns).Create(context.Background(), &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: minAvailable, MaxUnavailable: maxUnavailable,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// waitStatus waits until the controller has observed the budget and
// reports healthy/desired/expected/allowed.
func waitStatus(t *testing.T, c kubernetes.Interface, ns, name string, healthy, desired, expected, allowed int32) *policyv1.PodDisruptionBudget {
	t.Helper()
	var pdb *policyv1.PodDisruptionBudget
	eventually(t, fmt.Sprintf("pdb %s status %d/%d/%d/%d", name, healthy, desired, expected, allowed), func() error {
		var err error
		pdb, err = c.PolicyV1().PodDisruptionBudgets(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		s := pdb.Status
		if s.ObservedGeneration != pdb.Generation || s.CurrentHealthy != healthy || s.DesiredHealthy != desired || s.ExpectedPods != expected || s.DisruptionsAllowed != allowed {
			return fmt.Errorf("status %+v (generation %d)", s, pdb.Generation)
		}
		cond := apimeta.FindStatusCondition(s.Conditions, policyv1.DisruptionAllowedCondition)
		if cond == nil || (cond.Status == metav1.ConditionTrue) != (allowed > 0) {
			return fmt.Errorf("condition %+v with %d allowed", cond, allowed)
		}
		return nil
	})
	return pdb
}

func evict(c kubernetes.Interface, ns, name string, opts *metav1.DeleteOptions) error {
	return c.PolicyV1().Evictions(ns).Evict(context.Background(), &policyv1.Eviction{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, DeleteOptions: opts})
}

func assertBudgetRefusal(t *testing.T, err error) {
	t.Helper()
	if !apierrors.IsTooManyRequests(err) {
		t.Fatalf("eviction: %v, want 429 TooManyRequests", err)
	}
	var se apierrors.APIStatus
	if !errors.As(err, &se) || se.Status().Message != "Cannot evict pod as it would violate the pod's disruption budget." {
		t.Fatalf("message: %v", err)
	}
	d := se.Status().Details
	if d == nil || len(d.Causes) == 0 || d.Causes[0].Type != policyv1.DisruptionBudgetCause {
		t.Fatalf("causes: %+v", d)
	}
}

func podGoingAway(c kubernetes.Interface, ns, name string) error {
	p, err := c.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if p.DeletionTimestamp == nil {
		return fmt.Errorf("pod %s not deleted", name)
	}
	return nil
}

// TestEvictionHonoursBudget: a budget of minAvailable 2 over three ready
// pods allows one eviction, which is recorded in disruptedPods; the next is
// refused with 429 until another pod is ready; a second budget over the
// same pods makes eviction a 500; dry runs and preconditions are honoured.
func TestEvictionHonoursBudget(t *testing.T) {
	s := testserver.Start(t)
	c := s.Client
	ctx := context.Background()
	ns := "default"
	createNode(t, c, "n1")
	for i := 0; i < 3; i++ {
		runningPod(t, c, ns, fmt.Sprint("web-", i), "n1", true)
	}
	two := intstr.FromInt32(2)
	createPDB(t, c, ns, "web", &two, nil)
	pdb := waitStatus(t, c, ns, "web", 3, 2, 3, 1)

	// A dry run passes the budget check but changes nothing.
	if err := evict(c, ns, "web-0", &metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Fatalf("dry-run eviction: %v", err)
	}
	if p, err := c.CoreV1().Pods(ns).Get(ctx, "web-0", metav1.GetOptions{}); err != nil || p.DeletionTimestamp != nil {
		t.Fatalf("dry run deleted the pod: %v", err)
	}
	if got, _ := c.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "web", metav1.GetOptions{}); got.Status.DisruptionsAllowed != 1 || len(got.Status.DisruptedPods) != 0 {
		t.Fatalf("dry run spent the budget: %+v", got.Status)
	}

	w, err := c.PolicyV1().PodDisruptionBudgets(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=web", ResourceVersion: pdb.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if err := evict(c, ns, "web-0", nil); err != nil {
		t.Fatalf("first eviction: %v", err)
	}
	// The eviction spends the budget before deleting: disruptionsAllowed
	// 0 with web-0 in disruptedPods, written by the API server.
	timeout := time.After(10 * time.Second)
	for seen := false; !seen; {
		select {
		case ev := <-w.ResultChan():
			if ev.Type != watch.Modified {
				continue
			}
			p := ev.Object.(*policyv1.PodDisruptionBudget)
			if _, ok := p.Status.DisruptedPods["web-0"]; ok && p.Status.DisruptionsAllowed == 0 {
				seen = true
			}
		case <-timeout:
			t.Fatal("no budget update recording web-0 in disruptedPods")
		}
	}
	eventually(t, "web-0 deleted", func() error { return podGoingAway(c, ns, "web-0") })
	if p, err := c.CoreV1().Pods(ns).Get(ctx, "web-0", metav1.GetOptions{}); err == nil {
		found := false
		for _, cond := range p.Status.Conditions {
			found = found || (cond.Type == corev1.DisruptionTarget && cond.Reason == "EvictionByEvictionAPI")
		}
		if !found {
			t.Fatalf("evicted pod has no DisruptionTarget condition: %+v", p.Status.Conditions)
		}
	}
	waitStatus(t, c, ns, "web", 2, 2, 3, 0)

	// The budget is spent: 429, dry run or not.
	assertBudgetRefusal(t, evict(c, ns, "web-1", nil))
	assertBudgetRefusal(t, evict(c, ns, "web-1", &metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}))
	if err := podGoingAway(c, ns, "web-1"); err == nil {
		t.Fatal("refused eviction deleted web-1")
	}

	// An unready pod may go while the application is healthy without it
	// (IfHealthyBudget), without spending the budget.
	runningPod(t, c, ns, "web-unready", "n1", false)
	waitStatus(t, c, ns, "web", 2, 2, 4, 0)
	if err := evict(c, ns, "web-unready", &metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatalf("evicting an unready pod with a healthy budget: %v", err)
	}
	eventually(t, "web-unready gone (grace 0)", func() error {
		_, err := c.CoreV1().Pods(ns).Get(ctx, "web-unready", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there: %v", err)
	})

	// A pod coming back ready restores the budget.
	runningPod(t, c, ns, "web-3", "n1", true)
	waitStatus(t, c, ns, "web", 3, 2, 4, 1)
	if err := evict(c, ns, "web-1", nil); err != nil {
		t.Fatalf("eviction after recovery: %v", err)
	}
	waitStatus(t, c, ns, "web", 2, 2, 4, 0)

	// Two budgets over one pod: upstream's 500.
	one := intstr.FromInt32(1)
	createPDB(t, c, ns, "web-too", nil, &one)
	err = evict(c, ns, "web-2", nil)
	var se apierrors.APIStatus
	if err == nil || !errors.As(err, &se) || se.Status().Code != http.StatusInternalServerError ||
		!strings.Contains(err.Error(), "This pod has more than one PodDisruptionBudget") {
		t.Fatalf("two budgets: %v, want 500 more than one PodDisruptionBudget", err)
	}
	if err := podGoingAway(c, ns, "web-2"); err == nil {
		t.Fatal("eviction with two budgets deleted web-2")
	}

	// Pods that are not running ignore the budget.
	if err := c.PolicyV1().PodDisruptionBudgets(ns).Delete(ctx, "web-too", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	p, _ := c.CoreV1().Pods(ns).Get(ctx, "web-2", metav1.GetOptions{})
	p.Status.Phase = corev1.PodSucceeded
	if _, err := c.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// (A stale resourceVersion precondition is a conflict, not retried.)
	stale := "1"
	if err := evict(c, ns, "web-2", &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &stale}}); !apierrors.IsConflict(err) {
		t.Fatalf("stale precondition: %v, want 409", err)
	}
	if err := evict(c, ns, "web-2", nil); err != nil {
		t.Fatalf("evicting a terminal pod: %v", err)
	}
	eventually(t, "web-2 deleted", func() error { return podGoingAway(c, ns, "web-2") })
}

// TestDrainBlocksOnBudget: kubectl drain retries an eviction the budget
// refuses and gives up at its timeout, saying why.
func TestDrainBlocksOnBudget(t *testing.T) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("no kubectl")
	}
	s := testserver.Start(t)
	c := s.Client
	createNode(t, c, "n2")
	for i := 0; i < 2; i++ {
		runningPod(t, c, "default", fmt.Sprint("web-", i), "n2", true)
	}
	two := intstr.FromInt32(2)
	createPDB(t, c, "default", "web", &two, nil)
	waitStatus(t, c, "default", "web", 2, 2, 2, 0)

	out, err := exec.Command("kubectl", "--kubeconfig", s.Kubeconfig(), "drain", "n2",
		"--ignore-daemonsets", "--force", "--timeout", "5s").CombinedOutput()
	if err == nil {
		t.Fatalf("drain succeeded despite the budget:\n%s", out)
	}
	if !strings.Contains(string(out), "Cannot evict pod as it would violate the pod's disruption budget.") {
		t.Fatalf("drain output does not mention the disruption budget:\n%s", out)
	}
	for i := 0; i < 2; i++ {
		if err := podGoingAway(c, "default", fmt.Sprint("web-", i)); err == nil {
			t.Fatalf("drain evicted web-%d", i)
		}
	}
	n, _ := c.CoreV1().Nodes().Get(context.Background(), "n2", metav1.GetOptions{})
	if !n.Spec.Unschedulable {
		t.Fatal("drain did not cordon the node")
	}
}

// TestPercentageUsesDeploymentScale: a maxUnavailable percentage is taken
// of the Deployment's replicas (found through its ReplicaSet), not of the
// pods that exist.
func TestPercentageUsesDeploymentScale(t *testing.T) {
	s := testserver.Start(t)
	c := s.Client
	ctx := context.Background()
	replicas := int32(4)
	labels := map[string]string{"app": "web"}
	_, err := c.AppsV1().Deployments("default").Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var pods []corev1.Pod
	eventually(t, "4 pods", func() error {
		l, err := c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		if len(l.Items) != 4 {
			return fmt.Errorf("%d pods", len(l.Items))
		}
		pods = l.Items
		return nil
	})
	// Three of the four become ready.
	for i := range 3 {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			p, err := c.CoreV1().Pods("default").Get(ctx, pods[i].Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			p.Status.Phase = corev1.PodRunning
			p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()})
			_, err = c.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	half := intstr.FromString("50%")
	createPDB(t, c, "default", "web", nil, &half)
	// expected 4 (the Deployment's replicas), desired 4-2 = 2, healthy 3.
	waitStatus(t, c, "default", "web", 3, 2, 4, 1)

	// Scaling the Deployment to 6 makes the budget 6-3 = 3 over 6 pods.
	sc, err := c.AppsV1().Deployments("default").GetScale(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sc.Spec.Replicas = 6
	if _, err := c.AppsV1().Deployments("default").UpdateScale(ctx, "web", sc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, c, "default", "web", 3, 3, 6, 0)
}

// TestPercentageUsesCustomResourceScale: pods controlled by a custom
// resource with a scale subresource count that resource's spec.replicas
// as the expected pods of a percentage budget, as upstream does through
// /scale.
func TestPercentageUsesCustomResourceScale(t *testing.T) {
	s := testserver.Start(t)
	c := s.Client
	ctx := context.Background()
	scalestest.CreateCRD(t, s)
	owner := scalestest.Create(t, s, "default", "web", 4)
	createNode(t, c, "n1")
	ref := metav1.OwnerReference{APIVersion: scalestest.APIVersion, Kind: scalestest.Kind, Name: "web", UID: owner.GetUID(), Controller: ptr.To(true)}
	for i := range 3 {
		name := fmt.Sprint("web-", i)
		runningPod(t, c, "default", name, "n1", true)
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			p, err := c.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			p.OwnerReferences = []metav1.OwnerReference{ref}
			_, err = c.CoreV1().Pods("default").Update(ctx, p, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	half := intstr.FromString("50%")
	createPDB(t, c, "default", "web", nil, &half)
	// expected 4 (the resource's replicas, not the 3 pods), desired 4-2 = 2.
	waitStatus(t, c, "default", "web", 3, 2, 4, 1)
}
