package agent

import (
	"encoding/json"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestStatusUnchangedAfterTheAPIStoredIt: a status computed with
// containerd's nanosecond times equals the same status read back from the
// API (times to the second), so a sync that changed nothing writes
// nothing; a real change still counts.
func TestStatusUnchangedAfterTheAPIStoredIt(t *testing.T) {
	at := func(s string) metav1.Time {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return metav1.NewTime(tm)
	}
	computed := func() *corev1.PodStatus {
		start := at("2026-12-01T23:47:05.530675484Z")
		return &corev1.PodStatus{
			Phase:      corev1.PodRunning,
			StartTime:  &start,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: at("2026-12-01T23:47:05.531506148Z")}},
			ContainerStatuses: []corev1.ContainerStatus{{
				Name:  "c",
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: at("2026-12-01T23:47:05.512532428Z")}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
					ExitCode: 1, StartedAt: at("2026-12-01T23:46:01.1Z"), FinishedAt: at("2026-12-01T23:47:04.999Z")}},
			}},
			InitContainerStatuses: []corev1.ContainerStatus{{
				Name: "i", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
					StartedAt: at("2026-12-01T23:47:00.25Z"), FinishedAt: at("2026-12-01T23:47:01.75Z")}},
			}},
		}
	}
	// What the API stores and the informer hands back: a JSON round trip.
	b, err := json.Marshal(computed())
	if err != nil {
		t.Fatal(err)
	}
	var stored corev1.PodStatus
	if err := json.Unmarshal(b, &stored); err != nil {
		t.Fatal(err)
	}
	if stored.ContainerStatuses[0].State.Running.StartedAt.Nanosecond() != 0 {
		t.Fatal("the round trip kept nanoseconds: the test does not model the API")
	}
	if !statusUnchanged(computed(), &stored) {
		t.Error("an unchanged status compares as changed: every sync would write it again")
	}

	changed := computed()
	changed.ContainerStatuses[0].State.Running.StartedAt = at("2026-12-01T23:47:09.5Z")
	if statusUnchanged(changed, &stored) {
		t.Error("a container started at another second compares as unchanged")
	}
	changed = computed()
	changed.ContainerStatuses[0].Ready = true
	if statusUnchanged(changed, &stored) {
		t.Error("a readiness change compares as unchanged")
	}
}

// TestMountBackoff: a failed volume setup is retried after 500 ms, then
// twice as long each time up to 5 s; success forgets the count.
func TestMountBackoff(t *testing.T) {
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	a := &Agent{}
	for i, w := range want {
		if got := a.mountFailed("u"); got != w {
			t.Fatalf("failure %d: retry after %v, want %v", i+1, got, w)
		}
	}
	if got := mountBackoff(1000); got != 5*time.Second {
		t.Fatalf("mountBackoff(1000) = %v", got)
	}
	a.mountDone("u")
	if got := a.mountFailed("u"); got != 500*time.Millisecond {
		t.Fatalf("after a success the next failure waits %v, want 500ms", got)
	}
	if got := a.mountFailed("other"); got != 500*time.Millisecond {
		t.Fatalf("another pod's first failure waits %v", got)
	}
}
