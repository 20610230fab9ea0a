package apiserver_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/skiffhq/skiff/controlplane/apiserver"
	"github.com/skiffhq/skiff/controlplane/storage"
	"github.com/skiffhq/skiff/internal/testserver"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestPatchFromALaggingWatchCache: an update's first attempt reads the
// watch cache, which may not have the client's previous write yet. A
// JSON patch testing the value that write set must still apply (the
// stale copy's failure is retried on a fresh read), and one whose test
// fails on the current object still answers 422. Found as a CI flake of
// TestPatchTypes under -race.
func TestPatchFromALaggingWatchCache(t *testing.T) {
	s := testserver.Start(t)
	ctx := ctxT(t)
	const name = "stale-cache-patch"
	d := s.Client.AppsV1().Deployments("default")
	if _, err := d.Create(ctx, deployment(name), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var stale *storage.KV
	isOurs := func(key string) bool { return strings.HasSuffix(key, "/default/"+name) }
	// Record what the cache holds before the label is set.
	apiserver.FilterCachedReads(t, func(key string, kv storage.KV, ok bool) (storage.KV, bool) {
		mu.Lock()
		defer mu.Unlock()
		if ok && isOurs(key) && stale == nil {
			c := kv
			stale = &c
		}
		return kv, ok
	})
	if _, err := d.Patch(ctx, name, types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if stale == nil {
		mu.Unlock()
		t.Fatal("the merge patch did not read the watch cache: the test cannot stand in for it")
	}
	old := *stale
	mu.Unlock()
	// From now on the cache lags: it still has the object without the label.
	apiserver.FilterCachedReads(t, func(key string, kv storage.KV, ok bool) (storage.KV, bool) {
		if isOurs(key) {
			return old, true
		}
		return kv, ok
	})
	got, err := d.Patch(ctx, name, types.JSONPatchType,
		[]byte(`[{"op":"test","path":"/metadata/labels/x","value":"y"},{"op":"replace","path":"/spec/replicas","value":5}]`), metav1.PatchOptions{})
	if err != nil {
		t.Fatalf("json patch testing the label just set, with a lagging cache: %v", err)
	}
	if *got.Spec.Replicas != 5 || got.Labels["x"] != "y" {
		t.Fatalf("after the patch: replicas %d, labels %v", *got.Spec.Replicas, got.Labels)
	}
	_, err = d.Patch(ctx, name, types.JSONPatchType,
		[]byte(`[{"op":"test","path":"/metadata/labels/x","value":"z"},{"op":"replace","path":"/spec/replicas","value":7}]`), metav1.PatchOptions{})
	if !apierrors.IsInvalid(err) {
		t.Fatalf("json patch whose test fails on the current object: want 422 Invalid, got %v", err)
	}
	if cur, err := d.Get(ctx, name, metav1.GetOptions{}); err != nil || *cur.Spec.Replicas != 5 {
		t.Fatalf("the failed patch changed the object or the get failed: %v", err)
	}
}
