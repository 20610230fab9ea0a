package replicaset_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/internal/playnode"
	"github.com/skiffhq/skiff/internal/testserver"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

func template(app string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}}},
	}
}

// ownedPods lists the active pods whose controller is uid.
func ownedPods(t *testing.T, c kubernetes.Interface, ns string, uid types.UID) []corev1.Pod {
	t.Helper()
	l, err := c.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range l.Items {
		if ref := metav1.GetControllerOf(&p); ref != nil && ref.UID == uid && p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

func podNames(ps []corev1.Pod) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	slices.Sort(out)
	return out
}

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

func TestReplicaSet(t *testing.T) {
	s := testserver.Start(t)
	ctx := context.Background()
	c := s.Client
	ns := "default"
	three := int32(3)
	rs, err := c.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       appsv1.ReplicaSetSpec{Replicas: &three, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, Template: template("web")},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var pods []corev1.Pod
	eventually(t, "3 pods", func() error {
		if pods = ownedPods(t, c, ns, rs.UID); len(pods) != 3 {
			return fmt.Errorf("%d pods", len(pods))
		}
		return nil
	})
	ref := metav1.GetControllerOf(&pods[0])
	if ref.Kind != "ReplicaSet" || ref.APIVersion != "apps/v1" || ref.Name != "web" || ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
		t.Fatalf("owner reference = %+v", ref)
	}
	if pods[0].GenerateName != "web-" || pods[0].Labels["app"] != "web" {
		t.Fatalf("pod meta = %s %v", pods[0].GenerateName, pods[0].Labels)
	}
	// Stable: no extra pods after the expectations settle.
	time.Sleep(300 * time.Millisecond)
	if n := len(ownedPods(t, c, ns, rs.UID)); n != 3 {
		t.Fatalf("%d pods after settling, want 3", n)
	}

	// A deleted pod is replaced.
	gone := pods[0].Name
	if err := c.CoreV1().Pods(ns).Delete(ctx, gone, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "replacement", func() error {
		pods = ownedPods(t, c, ns, rs.UID)
		if len(pods) != 3 || slices.Contains(podNames(pods), gone) {
			return fmt.Errorf("pods %v", podNames(pods))
		}
		return nil
	})

	// Two pods become ready; status follows.
	ready := podNames(pods)[:2]
	for _, n := range ready {
		if err := playnode.SetReady(ctx, c, ns, n, true); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "status", func() error {
		got, err := c.AppsV1().ReplicaSets(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		st := got.Status
		if st.Replicas != 3 || st.ReadyReplicas != 2 || st.AvailableReplicas != 2 || st.FullyLabeledReplicas != 3 || st.ObservedGeneration != got.Generation {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})

	// Scaling down to 2 deletes the pod that is not ready.
	scale, err := c.AppsV1().ReplicaSets(ns).GetScale(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scale.Spec.Replicas = 2
	if _, err := c.AppsV1().ReplicaSets(ns).UpdateScale(ctx, "web", scale, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "scale down keeps the ready pods", func() error {
		if got := podNames(ownedPods(t, c, ns, rs.UID)); !slices.Equal(got, ready) {
			return fmt.Errorf("pods %v, want %v", got, ready)
		}
		return nil
	})

	// An orphan that matches is adopted (then deleted as the surplus, being
	// the least ready); a pod whose labels stop matching is released.
	orphan := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "stray", Labels: map[string]string{"app": "web"}}, Spec: template("web").Spec}
	if _, err := c.CoreV1().Pods(ns).Create(ctx, orphan, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "orphan adopted and removed as surplus", func() error {
		if _, err := c.CoreV1().Pods(ns).Get(ctx, "stray", metav1.GetOptions{}); err == nil {
			return fmt.Errorf("stray still exists")
		}
		if got := podNames(ownedPods(t, c, ns, rs.UID)); !slices.Equal(got, ready) {
			return fmt.Errorf("pods %v, want %v", got, ready)
		}
		return nil
	})
	podClient := c.CoreV1().Pods(ns)
	if _, err := testserver.Modify(ctx, podClient.Get, podClient.Update, ready[0], func(p *corev1.Pod) { p.Labels["app"] = "debug" }); err != nil {
		t.Fatal(err)
	}
	eventually(t, "release and replace", func() error {
		got, err := c.CoreV1().Pods(ns).Get(ctx, ready[0], metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(got.OwnerReferences) != 0 {
			return fmt.Errorf("still owned: %+v", got.OwnerReferences)
		}
		if n := len(ownedPods(t, c, ns, rs.UID)); n != 2 {
			return fmt.Errorf("%d owned pods", n)
		}
		return nil
	})

	evs, err := c.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]bool{}
	for _, e := range evs.Items {
		if e.InvolvedObject.Kind == "ReplicaSet" && e.InvolvedObject.Name == "web" && e.Source.Component == "replicaset-controller" {
			reasons[e.Reason] = true
		}
	}
	if !reasons["SuccessfulCreate"] || !reasons["SuccessfulDelete"] {
		t.Fatalf("event reasons %v, want SuccessfulCreate and SuccessfulDelete", reasons)
	}
}

func TestReplicationController(t *testing.T) {
	s := testserver.Start(t)
	ctx := context.Background()
	c := s.Client
	two := int32(2)
	tmpl := template("legacy")
	rc, err := c.CoreV1().ReplicationControllers("default").Create(ctx, &corev1.ReplicationController{
		ObjectMeta: metav1.ObjectMeta{Name: "legacy"},
		Spec:       corev1.ReplicationControllerSpec{Replicas: &two, Selector: map[string]string{"app": "legacy"}, Template: &tmpl},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var pods []corev1.Pod
	eventually(t, "2 pods", func() error {
		if pods = ownedPods(t, c, "default", rc.UID); len(pods) != 2 {
			return fmt.Errorf("%d pods", len(pods))
		}
		return nil
	})
	if ref := metav1.GetControllerOf(&pods[0]); ref.Kind != "ReplicationController" || ref.APIVersion != "v1" {
		t.Fatalf("owner reference = %+v", ref)
	}
	if err := playnode.SetReady(ctx, c, "default", pods[0].Name, true); err != nil {
		t.Fatal(err)
	}
	eventually(t, "rc status", func() error {
		got, err := c.CoreV1().ReplicationControllers("default").Get(ctx, "legacy", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if st := got.Status; st.Replicas != 2 || st.ReadyReplicas != 1 || st.AvailableReplicas != 1 || st.ObservedGeneration != got.Generation {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
}
