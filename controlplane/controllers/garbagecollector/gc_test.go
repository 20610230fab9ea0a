package garbagecollector_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testserver"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

const ns = "default"

func cm(t *testing.T, cs kubernetes.Interface, name string, owner *corev1.ConfigMap, block bool, finalizers ...string) *corev1.ConfigMap {
	t.Helper()
	c := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Finalizers: finalizers}}
	if owner != nil {
		c.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID, BlockOwnerDeletion: &block}}
	}
	out, err := cs.CoreV1().ConfigMaps(ns).Create(context.Background(), c, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	return out
}

func gone(cs kubernetes.Interface, name string) bool {
	_, err := cs.CoreV1().ConfigMaps(ns).Get(context.Background(), name, metav1.GetOptions{})
	return apierrors.IsNotFound(err)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func del(t *testing.T, cs kubernetes.Interface, name string, policy metav1.DeletionPropagation) {
	t.Helper()
	if err := cs.CoreV1().ConfigMaps(ns).Delete(context.Background(), name, metav1.DeleteOptions{PropagationPolicy: &policy}); err != nil {
		t.Fatalf("delete %s: %v", name, err)
	}
}

func removeFinalizers(t *testing.T, cs kubernetes.Interface, name string) {
	t.Helper()
	p, _ := json.Marshal(map[string]any{"metadata": map[string]any{"finalizers": nil}})
	if _, err := cs.CoreV1().ConfigMaps(ns).Patch(context.Background(), name, types.MergePatchType, p, metav1.PatchOptions{}); err != nil {
		t.Fatalf("remove finalizers of %s: %v", name, err)
	}
}

func TestGarbageCollector(t *testing.T) {
	s := testserver.Start(t)
	cs := s.Client
	ctx := context.Background()

	t.Run("background deletes dependents", func(t *testing.T) {
		owner := cm(t, cs, "bg-owner", nil, false)
		cm(t, cs, "bg-dep1", owner, false)
		cm(t, cs, "bg-dep2", owner, true)
		// A dependent with a second, living owner only loses the reference.
		other := cm(t, cs, "bg-other", nil, false)
		shared := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "bg-shared", OwnerReferences: []metav1.OwnerReference{
			{APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID},
			{APIVersion: "v1", Kind: "ConfigMap", Name: other.Name, UID: other.UID},
		}}}
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, shared, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		del(t, cs, "bg-owner", metav1.DeletePropagationBackground)
		eventually(t, "dependents deleted", func() bool { return gone(cs, "bg-dep1") && gone(cs, "bg-dep2") })
		eventually(t, "shared dependent keeps only its living owner", func() bool {
			c, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "bg-shared", metav1.GetOptions{})
			return err == nil && len(c.OwnerReferences) == 1 && c.OwnerReferences[0].UID == other.UID
		})
		if gone(cs, "bg-other") {
			t.Fatal("unrelated owner was deleted")
		}
	})

	t.Run("dependent of an owner that never existed is collected", func(t *testing.T) {
		fake := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "ghost", UID: "00000000-0000-0000-0000-000000000001"}}
		cm(t, cs, "ghost-dep", fake, false)
		// Same name, other UID: the owner the reference means is gone.
		cm(t, cs, "ghost", nil, false)
		eventually(t, "dangling dependent deleted", func() bool { return gone(cs, "ghost-dep") })
		if gone(cs, "ghost") {
			t.Fatal("object with the owner's name but another UID was deleted")
		}
	})

	t.Run("orphan keeps dependents and strips references", func(t *testing.T) {
		owner := cm(t, cs, "or-owner", nil, false)
		cm(t, cs, "or-dep1", owner, false)
		cm(t, cs, "or-dep2", owner, true)
		del(t, cs, "or-owner", metav1.DeletePropagationOrphan)
		eventually(t, "owner gone", func() bool { return gone(cs, "or-owner") })
		for _, n := range []string{"or-dep1", "or-dep2"} {
			c, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				t.Fatalf("orphaned dependent %s: %v", n, err)
			}
			if len(c.OwnerReferences) != 0 {
				t.Fatalf("%s still has owner references %v", n, c.OwnerReferences)
			}
		}
		// And they stay.
		time.Sleep(time.Second)
		if gone(cs, "or-dep1") || gone(cs, "or-dep2") {
			t.Fatal("orphaned dependent was collected")
		}
	})

	t.Run("foreground deletes dependents before the owner", func(t *testing.T) {
		owner := cm(t, cs, "fg-owner", nil, false)
		cm(t, cs, "fg-dep1", owner, true)
		cm(t, cs, "fg-held", owner, true, "example.com/hold")
		del(t, cs, "fg-owner", metav1.DeletePropagationForeground)
		eventually(t, "plain dependent deleted", func() bool { return gone(cs, "fg-dep1") })
		eventually(t, "held dependent is being deleted", func() bool {
			c, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "fg-held", metav1.GetOptions{})
			return err == nil && c.DeletionTimestamp != nil
		})
		time.Sleep(500 * time.Millisecond)
		o, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "fg-owner", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("owner went before its blocking dependent: %v", err)
		}
		if o.DeletionTimestamp == nil || len(o.Finalizers) != 1 || o.Finalizers[0] != metav1.FinalizerDeleteDependents {
			t.Fatalf("owner deletion state: %v %v", o.DeletionTimestamp, o.Finalizers)
		}
		removeFinalizers(t, cs, "fg-held")
		eventually(t, "owner gone after its dependents", func() bool { return gone(cs, "fg-held") && gone(cs, "fg-owner") })
	})
}
