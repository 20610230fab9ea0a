package ttlafterfinished_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/job"
	"github.com/skiffhq/skiff/controlplane/controllers/ttlafterfinished"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/nodeagent/hollow"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

func TestTimeLeft(t *testing.T) {
	finished := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ttl := int32(30)
	j := &batchv1.Job{Spec: batchv1.JobSpec{TTLSecondsAfterFinished: &ttl}, Status: batchv1.JobStatus{Conditions: []batchv1.JobCondition{
		{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(finished.Add(-time.Hour))},
		{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(finished)},
	}}}
	left, err := ttlafterfinished.TimeLeft(j, finished.Add(10*time.Second))
	if err != nil || left != 20*time.Second {
		t.Fatalf("TimeLeft = %v, %v; want 20s", left, err)
	}
	j.Status.Conditions = j.Status.Conditions[:1]
	if _, err := ttlafterfinished.TimeLeft(j, finished); err == nil {
		t.Fatal("an unfinished job has a finish time")
	}
}

// TestDeletesFinishedJob runs the whole server: the Job controller
// completes a job on a hollow node and this controller deletes it (and the
// garbage collector its pods) once its TTL has passed; a job without a TTL
// stays.
func TestDeletesFinishedJob(t *testing.T) {
	s := testserver.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nodes, err := hollow.Start(ctx, s.Config, hollow.Options{Nodes: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer nodes.Stop()
	mk := func(name string, ttl *int32) *batchv1.Job {
		j, err := s.Client.BatchV1().Jobs("default").Create(ctx, &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: batchv1.JobSpec{TTLSecondsAfterFinished: ttl, Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{hollow.ExitCodeAnnotation: "0"}},
				Spec:       corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	ttl := int32(1)
	short := mk("short-lived", &ttl)
	kept := mk("kept", nil)
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := s.Client.BatchV1().Jobs("default").Get(ctx, short.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job with ttlSecondsAfterFinished=1 not deleted: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for {
		pods, err := s.Client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{
			LabelSelector: labels.Set{batchv1.ControllerUidLabel: string(short.UID)}.String()})
		if err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d pods of the deleted job left (background propagation)", len(pods.Items))
		}
		time.Sleep(100 * time.Millisecond)
	}
	j, err := s.Client.BatchV1().Jobs("default").Get(ctx, kept.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("job without a TTL was deleted: %v", err)
	}
	if !job.HasCondition(j, batchv1.JobComplete) {
		t.Fatalf("job without a TTL: status %s", fmt.Sprint(j.Status))
	}
}
