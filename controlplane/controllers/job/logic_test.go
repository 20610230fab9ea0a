package job

import (
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestIndexesRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		in    string
		limit int
		want  string
	}{
		{"", 10, ""},
		{"0", 10, "0"},
		{"0,1,2,5,7-9", 10, "0-2,5,7-9"},
		{"3-5,1", 10, "1,3-5"},
		{"0-9", 5, "0-4"},
		{"x,2", 5, "2"},
	} {
		if got := ParseIndexes(tc.in, tc.limit).String(); got != tc.want {
			t.Errorf("ParseIndexes(%q, %d) = %q, want %q", tc.in, tc.limit, got, tc.want)
		}
	}
}

func failedPod(code int32, conds ...corev1.PodCondition) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"},
		Status: corev1.PodStatus{Phase: corev1.PodFailed, Conditions: conds, ContainerStatuses: []corev1.ContainerStatus{
			{Name: "ok", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}},
			{Name: "main", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code}}},
		}},
	}
}

func TestMatchPodFailurePolicy(t *testing.T) {
	main := "main"
	policy := &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{
		{Action: batchv1.PodFailurePolicyActionIgnore, OnPodConditions: []batchv1.PodFailurePolicyOnPodConditionsPattern{{Type: corev1.DisruptionTarget}}},
		{Action: batchv1.PodFailurePolicyActionFailJob, OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{
			ContainerName: &main, Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{42}}},
		{Action: batchv1.PodFailurePolicyActionCount, OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{
			Operator: batchv1.PodFailurePolicyOnExitCodesOpNotIn, Values: []int32{1, 2}}},
	}}
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want batchv1.PodFailurePolicyAction
	}{
		{"exit 42 fails the job", failedPod(42), batchv1.PodFailurePolicyActionFailJob},
		{"disruption is ignored first", failedPod(42, corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue}), batchv1.PodFailurePolicyActionIgnore},
		{"condition False does not match", failedPod(7, corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionFalse}), batchv1.PodFailurePolicyActionCount},
		{"exit 1 matches no rule (exit 0 containers never match NotIn)", failedPod(1), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := MatchPodFailurePolicy(policy, tc.pod); got.Action != tc.want {
				t.Errorf("action %q (%s), want %q", got.Action, got.Message, tc.want)
			}
		})
	}
	got := MatchPodFailurePolicy(policy, failedPod(42))
	if want := "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1"; got.Message != want {
		t.Errorf("message %q, want %q", got.Message, want)
	}
	running := failedPod(42)
	running.Status.Phase = corev1.PodRunning
	if got := MatchPodFailurePolicy(policy, running); got.Action != "" {
		t.Errorf("a pod that has not failed matched %q", got.Action)
	}
}

func TestWantActive(t *testing.T) {
	i32 := func(v int32) *int32 { return &v }
	for _, tc := range []struct {
		name                        string
		completions                 *int32
		par, succeeded, active, out int
	}{
		{"fixed completions, start", i32(5), 2, 0, 0, 2},
		{"fixed completions, one left", i32(5), 2, 4, 2, 1},
		{"fixed completions, done", i32(5), 2, 5, 0, 0},
		{"work queue, none succeeded", nil, 3, 0, 1, 3},
		{"work queue, one succeeded: no new pods", nil, 3, 1, 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := int32(tc.par)
			j := &batchv1.Job{Spec: batchv1.JobSpec{Completions: tc.completions, Parallelism: &p}}
			if got := WantActive(j, tc.succeeded, tc.active); got != tc.out {
				t.Errorf("WantActive = %d, want %d", got, tc.out)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	for failures, want := range map[int]time.Duration{0: 0, 1: 10 * time.Second, 2: 20 * time.Second, 3: 40 * time.Second, 20: time.Minute} {
		if got := Backoff(failures, 10*time.Second, time.Minute); got != want {
			t.Errorf("Backoff(%d) = %v, want %v", failures, got, want)
		}
	}
}

func TestPastBackoffLimit(t *testing.T) {
	limit := int32(2)
	j := &batchv1.Job{Spec: batchv1.JobSpec{BackoffLimit: &limit, Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever}}}}
	if PastBackoffLimit(j, 2, nil) || !PastBackoffLimit(j, 3, nil) {
		t.Error("Never: limit 2 must allow 2 failures and stop at 3")
	}
	j.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
	restarting := &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{RestartCount: 3}}}}
	if !PastBackoffLimit(j, 0, []*corev1.Pod{restarting}) {
		t.Error("OnFailure: 3 container restarts exceed backoffLimit 2")
	}
}

func TestPodForIndex(t *testing.T) {
	p := &corev1.Pod{Spec: corev1.PodSpec{InitContainers: []corev1.Container{{Name: "i"}}, Containers: []corev1.Container{{Name: "c"}}}}
	PodForIndex(p, "work", 3)
	if p.Annotations[batchv1.JobCompletionIndexAnnotation] != "3" || p.Labels[batchv1.JobCompletionIndexAnnotation] != "3" ||
		p.Spec.Hostname != "work-3" || p.GenerateName != "work-3-" {
		t.Errorf("pod %+v", p.ObjectMeta)
	}
	for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
		if len(c.Env) != 1 || c.Env[0].Name != "JOB_COMPLETION_INDEX" ||
			c.Env[0].ValueFrom.FieldRef.FieldPath != "metadata.annotations['batch.kubernetes.io/job-completion-index']" {
			t.Errorf("container %s env %+v", c.Name, c.Env)
		}
	}
	if got := PodIndex(p); got != 3 {
		t.Errorf("PodIndex = %d", got)
	}
}
