package job_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/skiffhq/skiff/controlplane/controllers/job"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
)

// TestStaleJobCacheCreatesNoPod plays upstream kubernetes#130103 with the
// controller's caches set by hand: a sync counts a succeeded pod and
// removes its finalizer; the next sync sees that pod without its finalizer
// (the pod cache caught up) beside the job as it was before the first
// sync's status writes (the job cache did not). The pod is counted
// nowhere there, so acting on it would create a second pod for a job of
// one completion. The controller must wait for its own write instead.
func TestStaleJobCacheCreatesNoPod(t *testing.T) {
	s := testserver.Start(t, func(c *server.Config) { c.Disable = append(c.Disable, job.Name) })
	c, ns := s.Client, "default"
	ctx := context.Background()
	jb := newJob("stale", 1, 1, 0, 0)
	j0, err := c.BatchV1().Jobs(ns).Create(ctx, jb, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "stale-done", Namespace: ns, Labels: j0.Spec.Template.Labels,
			Finalizers:      []string{batchv1.JobTrackingFinalizer},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(j0, batchv1.SchemeGroupVersion.WithKind("Job"))}},
		Spec: j0.Spec.Template.Spec,
	}
	p, err := c.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = corev1.PodSucceeded
	if p, err = c.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The caches are filled by hand (the informers never run).
	f := informers.NewSharedInformerFactory(c, 0)
	jc, err := job.New(job.Config{Client: c, Informers: f, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	jobs, pods := f.Batch().V1().Jobs().Informer().GetIndexer(), f.Core().V1().Pods().Informer().GetIndexer()
	if err := jobs.Add(j0); err != nil {
		t.Fatal(err)
	}
	if err := pods.Add(p); err != nil {
		t.Fatal(err)
	}
	key := ns + "/stale"
	if _, err := jc.Reconcile(ctx, key); err != nil {
		t.Fatalf("first sync: %v", err)
	}
	j1, err := c.BatchV1().Jobs(ns).Get(ctx, "stale", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if j1.Status.Succeeded != 1 {
		t.Fatalf("after the first sync: status %+v, want 1 succeeded", j1.Status)
	}
	p, err = c.CoreV1().Pods(ns).Get(ctx, p.Name, metav1.GetOptions{})
	if err != nil || len(p.Finalizers) != 0 {
		t.Fatalf("pod after the first sync: %v, finalizers %v", err, p.Finalizers)
	}

	// The pod cache catches up; the job cache still holds j0.
	if err := pods.Update(p); err != nil {
		t.Fatal(err)
	}
	res, syncErr := jc.Reconcile(ctx, key)
	countPods := func() int {
		t.Helper()
		l, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return len(l.Items)
	}
	if n := countPods(); n != 1 {
		t.Fatalf("%d pods after a sync on a stale job cache, want 1 (no replacement of a pod that succeeded)", n)
	}
	if syncErr != nil || res.RequeueAfter <= 0 {
		t.Errorf("sync on a stale job: %+v, %v; want a requeue and no error", res, syncErr)
	}

	// Once the cache shows the write, the job completes with one pod.
	if err := jobs.Update(j1); err != nil {
		t.Fatal(err)
	}
	if _, err := jc.Reconcile(ctx, key); err != nil {
		t.Fatalf("sync on a fresh job: %v", err)
	}
	if n := countPods(); n != 1 {
		t.Errorf("%d pods after the job cache caught up, want 1", n)
	}
	j2, err := c.BatchV1().Jobs(ns).Get(ctx, "stale", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if j2.Status.Succeeded != 1 || !job.HasCondition(j2, batchv1.JobComplete) {
		t.Errorf("final status %+v, want Complete with 1 succeeded", j2.Status)
	}
}
