package cronjob_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"sort"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/cronjob"
	"github.com/skiffhq/skiff/controlplane/controllers/job"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/nodeagent/hollow"
	"github.com/skiffhq/skiff/server"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
)

// env is a real server (scheduler and Job controller included) with a
// hollow node; each test runs its own CronJob controller on a fake clock.
type env struct {
	s  *testserver.Server
	c  kubernetes.Interface
	ns string
}

func start(t *testing.T) *env {
	t.Helper()
	s := testserver.Start(t, func(c *server.Config) { c.Disable = append(c.Disable, cronjob.Name) })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	nodes, err := hollow.Start(ctx, s.Config, hollow.Options{Nodes: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nodes.Stop)
	return &env{s: s, c: s.Client, ns: "default"}
}

// controller starts a CronJob controller whose clock the test moves.
func (e *env) controller(t *testing.T) *clocktesting.FakeClock {
	t.Helper()
	fake := clocktesting.NewFakeClock(time.Now())
	f := informers.NewSharedInformerFactory(e.c, 0)
	events := record.NewBroadcaster()
	events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: e.c.CoreV1().Events("")})
	t.Cleanup(events.Shutdown)
	cc, err := cronjob.New(cronjob.Config{Client: e.c, Informers: f, Clock: fake, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Recorder: events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: cronjob.Name})})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.Start(ctx.Done())
	done := make(chan struct{})
	go func() { defer close(done); _ = cc.Run(ctx, 2) }()
	t.Cleanup(func() { cancel(); <-done; f.Shutdown() })
	return fake
}

// tick moves the fake clock one second past the next minute boundary (and
// past real time, which creation timestamps come from); it returns that
// minute, the schedule time now due.
func tick(fake *clocktesting.FakeClock) time.Time {
	base := fake.Now()
	if now := time.Now(); now.After(base) {
		base = now
	}
	minute := base.Truncate(time.Minute).Add(time.Minute)
	fake.SetTime(minute.Add(time.Second))
	return minute
}

func newCronJob(name string, policy batchv1.ConcurrencyPolicy, runFor time.Duration) *batchv1.CronJob {
	return &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: batchv1.CronJobSpec{
			Schedule: "* * * * *", ConcurrencyPolicy: policy,
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{hollow.ExitCodeAnnotation: "0", hollow.RunForAnnotation: runFor.String()}},
				Spec:       corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
			}}},
		},
	}
}

func eventually(t *testing.T, what string, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
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

// jobsOf lists the jobs cj controls that are not being deleted, by name.
func (e *env) jobsOf(t *testing.T, cj *batchv1.CronJob) []batchv1.Job {
	t.Helper()
	l, err := e.c.BatchV1().Jobs(e.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []batchv1.Job
	for _, j := range l.Items {
		if ref := metav1.GetControllerOf(&j); ref != nil && ref.UID == cj.UID && j.DeletionTimestamp == nil {
			out = append(out, j)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out
}

func names(jobs []batchv1.Job) []string {
	var out []string
	for _, j := range jobs {
		out = append(out, j.Name)
	}
	return out
}

// waitJobs waits until cj's live jobs are exactly want.
func (e *env) waitJobs(t *testing.T, cj *batchv1.CronJob, want ...string) {
	t.Helper()
	sort.Strings(want)
	eventually(t, "jobs of "+cj.Name, 30*time.Second, func() error {
		if got := names(e.jobsOf(t, cj)); fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("jobs %v, want %v", got, want)
		}
		return nil
	})
}

func (e *env) waitEvent(t *testing.T, cj *batchv1.CronJob, reason string) {
	t.Helper()
	eventually(t, "event "+reason, 30*time.Second, func() error {
		l, err := e.c.CoreV1().Events(e.ns).List(context.Background(), metav1.ListOptions{
			FieldSelector: fields.Set{"involvedObject.uid": string(cj.UID), "reason": reason}.String()})
		if err != nil {
			return err
		}
		if len(l.Items) == 0 {
			return fmt.Errorf("no %s event", reason)
		}
		return nil
	})
}

func (e *env) create(t *testing.T, cj *batchv1.CronJob) *batchv1.CronJob {
	t.Helper()
	got, err := e.c.BatchV1().CronJobs(e.ns).Create(context.Background(), cj, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		bg := metav1.DeletePropagationBackground
		_ = e.c.BatchV1().CronJobs(e.ns).Delete(context.Background(), got.Name, metav1.DeleteOptions{PropagationPolicy: &bg})
	})
	return got
}

func (e *env) status(t *testing.T, name string) batchv1.CronJobStatus {
	t.Helper()
	cj, err := e.c.BatchV1().CronJobs(e.ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cj.Status
}

func TestCronJob(t *testing.T) {
	e := start(t)

	t.Run("KubectlCreateFrom", func(t *testing.T) { testKubectlCreateFrom(t, e) })

	t.Run("Forbid", func(t *testing.T) {
		fake := e.controller(t)
		cj := e.create(t, newCronJob("forbid", batchv1.ForbidConcurrent, time.Hour))
		m1 := tick(fake)
		first := cronjob.JobName(cj, m1)
		e.waitJobs(t, cj, first)
		eventually(t, "status", 10*time.Second, func() error {
			st := e.status(t, "forbid")
			if len(st.Active) != 1 || st.Active[0].Name != first || st.LastScheduleTime == nil || !st.LastScheduleTime.Time.Equal(m1) {
				return fmt.Errorf("status %+v", st)
			}
			return nil
		})
		tick(fake)
		e.waitEvent(t, cj, cronjob.JobAlreadyActive)
		if got := names(e.jobsOf(t, cj)); len(got) != 1 {
			t.Fatalf("Forbid started another job while %s runs: %v", first, got)
		}
	})

	t.Run("Replace", func(t *testing.T) {
		fake := e.controller(t)
		cj := e.create(t, newCronJob("replace", batchv1.ReplaceConcurrent, time.Hour))
		first := cronjob.JobName(cj, tick(fake))
		e.waitJobs(t, cj, first)
		second := cronjob.JobName(cj, tick(fake))
		e.waitJobs(t, cj, second)
		eventually(t, "status", 10*time.Second, func() error {
			if st := e.status(t, "replace"); len(st.Active) != 1 || st.Active[0].Name != second {
				return fmt.Errorf("active %+v", st.Active)
			}
			return nil
		})
	})

	t.Run("HistoryLimit", func(t *testing.T) {
		fake := e.controller(t)
		spec := newCronJob("history", batchv1.AllowConcurrent, 0)
		spec.Spec.SuccessfulJobsHistoryLimit = ptr(int32(2))
		cj := e.create(t, spec)
		var made []string
		for range 4 {
			name := cronjob.JobName(cj, tick(fake))
			made = append(made, name)
			eventually(t, name+" complete", 30*time.Second, func() error {
				j, err := e.c.BatchV1().Jobs(e.ns).Get(context.Background(), name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				if !job.HasCondition(j, batchv1.JobComplete) {
					return fmt.Errorf("job status %+v", j.Status)
				}
				return nil
			})
		}
		// Nothing new is due until the clock moves, so only the cleanup of
		// the two oldest finished jobs is left to happen.
		e.waitJobs(t, cj, made[2], made[3])
		eventually(t, "status", 10*time.Second, func() error {
			st := e.status(t, "history")
			if len(st.Active) != 0 || st.LastSuccessfulTime == nil {
				return fmt.Errorf("status %+v", st)
			}
			return nil
		})
	})
}

// TestCronJob/KubectlCreateFrom: `kubectl create job --from=cronjob/x` is
// a plain create of a Job owned by the CronJob, which then runs to the end.
func testKubectlCreateFrom(t *testing.T, e *env) {
	spec := newCronJob("manual", batchv1.AllowConcurrent, 0)
	spec.Spec.Suspend = ptr(true)
	cj := e.create(t, spec)
	out, err := exec.Command("kubectl", "--kubeconfig", e.s.Kubeconfig(), "create", "job", "--from=cronjob/manual", "manual-run").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl create job --from: %v\n%s", err, out)
	}
	eventually(t, "manual-run complete", 30*time.Second, func() error {
		j, err := e.c.BatchV1().Jobs(e.ns).Get(context.Background(), "manual-run", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if ref := metav1.GetControllerOf(j); ref == nil || ref.UID != cj.UID {
			t.Fatalf("manual job owner %+v", j.OwnerReferences)
		}
		if !job.HasCondition(j, batchv1.JobComplete) {
			return fmt.Errorf("status %+v", j.Status)
		}
		return nil
	})
}

func ptr[T any](v T) *T { return &v }
