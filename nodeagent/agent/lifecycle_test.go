package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/skiffhq/skiff/internal/testimages"
	"github.com/skiffhq/skiff/nodeagent/runtime"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
)

// TestHooksAndGracefulTermination: postStart runs after the start,
// preStop before the stop signal; a container that handles SIGTERM exits
// with it, one that ignores it is SIGKILLed once the grace period ran out,
// and the agent deletes the pod (grace 0) only after both stopped.
func TestHooksAndGracefulTermination(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	data := t.TempDir()
	const grace = 4
	// An image whose STOPSIGNAL is SIGUSR1: the agent stops with it.
	const usr1Image = "skiff.test/busybox-usr1:1"
	base, err := tarball.ImageFromPath(filepath.Join(e.opts.StateDir, "images", "busybox.tar"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := base.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config.StopSignal = "SIGUSR1"
	usr1, err := mutate.ConfigFile(base, cf)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(usr1Image)
	if err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(t.TempDir(), "usr1.tar")
	if err := tarball.WriteToFile(tarPath, tag, usr1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.agent.Runtime().ImportFile(ctx, tarPath); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if rt := e.agent.Runtime(); rt != nil {
			_ = rt.RemoveImage(context.Background(), "skiff.test/busybox-usr1:1")
		}
	})
	e.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "term"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](grace),
			Volumes:                       []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: data}}}},
			Containers: []corev1.Container{
				{
					// sh as PID 1 without a TERM trap ignores SIGTERM.
					Name: "stubborn", Image: testimages.Busybox,
					Command:      []string{"sh", "-c", "while true; do sleep 1; done"},
					VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
					Lifecycle: &corev1.Lifecycle{
						PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "echo started > /data/poststart"}}},
						PreStop:   &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "date +%s.%N > /data/prestop"}}},
					},
				},
				{
					Name: "polite", Image: testimages.Busybox,
					Command:      []string{"sh", "-c", "trap 'date +%s.%N > /data/term; exit 0' TERM; while true; do sleep 0.2; done"},
					VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
					Lifecycle:    &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 1}}},
				},
				{
					Name: "usr1", Image: usr1Image, ImagePullPolicy: corev1.PullNever,
					Command:      []string{"sh", "-c", "trap 'echo usr1 > /data/usr1; exit 0' USR1; while true; do sleep 0.2; done"},
					VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
				},
			},
		},
	})
	p := e.waitPod("default", "term", "Running", func(p *corev1.Pod) bool {
		return running(p) && status(p, "polite").State.Running != nil && status(p, "stubborn").State.Running != nil && status(p, "usr1").State.Running != nil
	})
	if b, err := os.ReadFile(filepath.Join(data, "poststart")); err != nil || string(b) != "started\n" {
		t.Errorf("postStart hook did not run: %q %v", b, err)
	}

	w, err := e.srv.Client.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", "term").String(), ResourceVersion: p.ResourceVersion,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	start := time.Now()
	if err := e.srv.Client.CoreV1().Pods("default").Delete(ctx, "term", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var last *corev1.Pod
	timeout := time.After(60 * time.Second)
wait:
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("watch ended before the pod was deleted")
			}
			if pod, ok := ev.Object.(*corev1.Pod); ok {
				if ev.Type == watch.Deleted {
					break wait
				}
				last = pod
			}
		case <-timeout:
			t.Fatal("pod not deleted within 60s")
		}
	}
	took := time.Since(start)
	// The stubborn container could only be gone this early if it was
	// killed before its grace period ran out.
	if took < (grace-1)*time.Second {
		t.Errorf("pod deleted after %v, before the %ds grace period could run out", took, grace)
	}
	if last == nil {
		t.Fatal("no status seen while terminating")
	}
	if st := status(last, "stubborn").State.Terminated; st == nil || st.ExitCode != 137 {
		t.Errorf("stubborn's final state %+v, want SIGKILL (137)", status(last, "stubborn").State)
	}
	if st := status(last, "polite").State.Terminated; st == nil || st.ExitCode != 0 {
		t.Errorf("polite's final state %+v, want exit 0 from its TERM trap", status(last, "polite").State)
	}
	if _, err := os.Stat(filepath.Join(data, "prestop")); err != nil {
		t.Errorf("preStop hook did not run: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, "term")); err != nil {
		t.Errorf("polite never saw SIGTERM: %v", err)
	}
	if st := status(last, "usr1").State.Terminated; st == nil || st.ExitCode != 0 {
		t.Errorf("usr1's final state %+v, want exit 0 from its USR1 trap (the image's STOPSIGNAL)", status(last, "usr1").State)
	}
	if _, err := os.Stat(filepath.Join(data, "usr1")); err != nil {
		t.Errorf("usr1 never got its image's stop signal: %v", err)
	}
	e.waitEvent("term", "Killing", "Stopping container stubborn")
	assertNothingLeft(t, e, string(p.UID), p.Status.PodIP)
}

func TestFailedPostStartHookKillsContainer(t *testing.T) {
	e := setup(t)
	e.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "badhook"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name: "c", Image: testimages.Busybox, Command: []string{"sleep", "3600"},
				Lifecycle: &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "echo nope; exit 3"}}}},
			}},
		},
	})
	e.waitEvent("badhook", "FailedPostStartHook", "exited with 3")
	e.waitPod("default", "badhook", "restarted", func(p *corev1.Pod) bool { return status(p, "c").RestartCount >= 1 })
}

// TestGracePeriodCutShort: a second delete with a shorter grace period
// (and a forced delete) ends a long graceful stop early, as upstream.
func TestGracePeriodCutShort(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	for _, n := range []string{"shortened", "forced"} {
		e.createPod(&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: n},
			Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: ptr.To[int64](300),
				Containers: []corev1.Container{{
					// sh as PID 1 ignores SIGTERM: only SIGKILL ends it.
					Name: "c", Image: testimages.Busybox, Command: []string{"sh", "-c", "while true; do sleep 1; done"},
				}},
			},
		})
	}
	pods := map[string]*corev1.Pod{}
	for _, n := range []string{"shortened", "forced"} {
		pods[n] = e.waitPod("default", n, "Running", running)
		if err := e.srv.Client.CoreV1().Pods("default").Delete(ctx, n, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	e.waitEvent("shortened", "Killing", "Stopping container c")
	e.waitEvent("forced", "Killing", "Stopping container c")
	if err := e.srv.Client.CoreV1().Pods("default").Delete(ctx, "shortened", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](1)}); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Client.CoreV1().Pods("default").Delete(ctx, "forced", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	// Within the 60 s of deletePodAndWait, far less than the 300 s the
	// pods started terminating with.
	e.deletePodAndWait("shortened")
	deadline := time.Now().Add(60 * time.Second)
	for {
		left := false
		for _, c := range e.ourContainers() {
			if c.Labels[runtime.LabelPodUID] == string(pods["forced"].UID) && c.State == runtime.StateRunning {
				left = true
			}
		}
		if !left {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the force-deleted pod's container still runs")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestNewPodStartsWhileOthersTerminate: pods waiting out a long grace
// period (their PID 1 ignores SIGTERM) do not hold up the start of a new
// pod, as each pod has a worker of its own in the kubelet. There are more
// of them than the agent has sync workers, so a sync that waited out a
// grace period on a worker would leave the new pod queued until the
// first of them was killed, 90 s on.
func TestNewPodStartsWhileOthersTerminate(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	const stubborn = 6
	var uids []string
	for i := 0; i < stubborn; i++ {
		e.createPod(&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("stubborn-%d", i)},
			Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: ptr.To[int64](90),
				Containers: []corev1.Container{{
					// sleep as PID 1 ignores SIGTERM: only SIGKILL ends it.
					Name: "c", Image: testimages.Busybox, Command: []string{"sleep", "3600"},
				}},
			},
		})
	}
	for i := 0; i < stubborn; i++ {
		p := e.waitPod("default", fmt.Sprintf("stubborn-%d", i), "Running", running)
		uids = append(uids, string(p.UID))
	}
	for i := 0; i < stubborn; i++ {
		name := fmt.Sprintf("stubborn-%d", i)
		if err := e.srv.Client.CoreV1().Pods("default").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitEvent(name, "Killing", "Stopping container c")
	}
	e.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "newcomer"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers:                    []corev1.Container{{Name: "c", Image: testimages.Busybox, Command: []string{"sleep", "3600"}}},
		},
	})
	e.waitPod("default", "newcomer", "Running", running)
	// Every stubborn pod is still in its grace period: none was killed
	// to make room.
	runningUIDs := map[string]bool{}
	for _, c := range e.ourContainers() {
		if c.State == runtime.StateRunning {
			runningUIDs[c.Labels[runtime.LabelPodUID]] = true
		}
	}
	for i, uid := range uids {
		if !runningUIDs[uid] {
			t.Errorf("stubborn-%d's container no longer runs when the new pod started", i)
		}
	}
	// Cut the grace periods short so the clean-up does not wait them out.
	for i := 0; i < stubborn; i++ {
		_ = e.srv.Client.CoreV1().Pods("default").Delete(ctx, fmt.Sprintf("stubborn-%d", i), metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	}
}
