package podutil_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/skiffhq/skiff/controlplane/controllers/internal/podutil"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// TestClaimer runs adoption and release against a real API server with no
// controllers, so every ownerReference change is the Claimer's own.
func TestClaimer(t *testing.T) {
	s := testserver.Start(t, func(c *server.Config) { c.Disable = append(c.Disable, "controller-manager") })
	ctx := context.Background()
	c := s.Client
	ns := "default"
	// No service account controller runs here; admission needs the SA.
	if _, err := c.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	owner, err := c.AppsV1().StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: appsv1.StatefulSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "db"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gvk := appsv1.SchemeGroupVersion.WithKind("StatefulSet")
	other := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "x", UID: "other-uid", Controller: new(true)}
	mk := func(name, app string, refs ...metav1.OwnerReference) *corev1.Pod {
		p, err := c.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": app}, OwnerReferences: refs},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	mine := *podutil.NewControllerRef(owner, gvk)
	pods := []*corev1.Pod{
		mk("db-0", "db", mine),    // owned and matching: kept
		mk("db-1", "other", mine), // owned, labels changed: released
		mk("db-2", "db"),          // orphan member: adopted
		mk("stray", "db"),         // orphan but not a member by name: left alone
		mk("db-3", "db", other),   // someone else's: left alone
		mk("db-4", "web"),         // orphan, no match: left alone
	}
	cl := podutil.Claimer{
		Client: c, Owner: owner, GVK: gvk, Selector: labels.SelectorFromSet(labels.Set{"app": "db"}),
		Fresh: func(ctx context.Context) (metav1.Object, error) {
			return c.AppsV1().StatefulSets(ns).Get(ctx, owner.Name, metav1.GetOptions{})
		},
		Adoptable: func(p *corev1.Pod) bool { return strings.HasPrefix(p.Name, "db-") },
	}
	owned, err := cl.Claim(ctx, pods)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range owned {
		names = append(names, p.Name)
	}
	if want := []string{"db-0", "db-2"}; !slices.Equal(names, want) {
		t.Fatalf("owned = %v, want %v", names, want)
	}
	controller := func(name string) string {
		p, err := c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if ref := metav1.GetControllerOf(p); ref != nil {
			return string(ref.UID)
		}
		return ""
	}
	for name, want := range map[string]string{
		"db-0": string(owner.UID), "db-1": "", "db-2": string(owner.UID),
		"stray": "", "db-3": "other-uid", "db-4": "",
	} {
		if got := controller(name); got != want {
			t.Errorf("%s controller = %q, want %q", name, got, want)
		}
	}

	// An owner that is gone (a stale cache still holds it) adopts nothing.
	if err := c.AppsV1().StatefulSets(ns).Delete(ctx, owner.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	late := mk("db-5", "db")
	owned, err = cl.Claim(ctx, []*corev1.Pod{late})
	if err != nil || len(owned) != 0 {
		t.Fatalf("claim for a deleted owner = %v, %v; want nothing", owned, err)
	}
	if got := controller("db-5"); got != "" {
		t.Errorf("db-5 adopted by a deleted owner: %q", got)
	}
}
