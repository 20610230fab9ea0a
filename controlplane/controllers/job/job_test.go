package job_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/internal/podutil"
	"github.com/skiffhq/skiff/controlplane/controllers/job"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/nodeagent/hollow"
	"github.com/skiffhq/skiff/server"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// env is a real server (scheduler included) with two hollow nodes and a
// Job controller whose failure backoff is short enough for tests.
type env struct {
	c  kubernetes.Interface
	ns string
}

func start(t *testing.T) *env {
	t.Helper()
	s := testserver.Start(t, func(c *server.Config) { c.Disable = append(c.Disable, job.Name) })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	nodes, err := hollow.Start(ctx, s.Config, hollow.Options{Nodes: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nodes.Stop)
	e := &env{c: s.Client, ns: "default"}
	t.Cleanup(e.runController(t))
	return e
}

// runController starts a Job controller on its own informers; the returned
// func stops it and waits for its workers.
func (e *env) runController(t *testing.T) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := informers.NewSharedInformerFactory(e.c, 0)
	jc, err := job.New(job.Config{Client: e.c, Informers: f, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		PodFailureBackoff: 20 * time.Millisecond, MaxPodFailureBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f.Start(ctx.Done())
	done := make(chan struct{})
	go func() { defer close(done); _ = jc.Run(ctx, 2) }()
	var once sync.Once
	return func() { once.Do(func() { cancel(); <-done; f.Shutdown() }) }
}

func newJob(name string, completions, parallelism int32, exitCode int, runFor time.Duration) *batchv1.Job {
	ann := map[string]string{hollow.ExitCodeAnnotation: strconv.Itoa(exitCode), hollow.RunForAnnotation: runFor.String()}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: batchv1.JobSpec{
			Completions: &completions, Parallelism: &parallelism,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Annotations: ann},
				Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{Name: "main", Image: "busybox"}}},
			},
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

func waitCondition(t *testing.T, e *env, name string, cond batchv1.JobConditionType, reason string) *batchv1.Job {
	t.Helper()
	var j *batchv1.Job
	eventually(t, name+" "+string(cond), 60*time.Second, func() error {
		var err error
		if j, err = e.c.BatchV1().Jobs(e.ns).Get(context.Background(), name, metav1.GetOptions{}); err != nil {
			return err
		}
		if c := job.FindCondition(j, cond); c != nil && c.Status == corev1.ConditionTrue {
			if c.Reason != reason {
				t.Fatalf("%s condition reason %q, want %q", cond, c.Reason, reason)
			}
			return nil
		}
		return fmt.Errorf("status %+v", j.Status)
	})
	return j
}

func jobPods(t *testing.T, e *env, j *batchv1.Job) []corev1.Pod {
	t.Helper()
	l, err := e.c.CoreV1().Pods(e.ns).List(context.Background(), metav1.ListOptions{
		LabelSelector: labels.Set{batchv1.ControllerUidLabel: string(j.UID)}.String()})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

// noTrackingFinalizers checks every pod was counted and released.
func noTrackingFinalizers(t *testing.T, pods []corev1.Pod) {
	t.Helper()
	for _, p := range pods {
		for _, f := range p.Finalizers {
			if f == batchv1.JobTrackingFinalizer {
				t.Errorf("pod %s still has %s", p.Name, f)
			}
		}
	}
}

// activeWatch records the most pods of a job active at once.
type activeWatch struct {
	mu    sync.Mutex
	store cache.Store
	max   int
}

func watchActive(t *testing.T, e *env, name string) *activeWatch {
	w := &activeWatch{}
	f := informers.NewSharedInformerFactoryWithOptions(e.c, 0, informers.WithNamespace(e.ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = labels.Set{batchv1.JobNameLabel: name}.String()
		}))
	inf := f.Core().V1().Pods().Informer()
	w.store = inf.GetStore()
	observe := func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		n := 0
		for _, o := range w.store.List() {
			if podutil.IsActive(o.(*corev1.Pod)) {
				n++
			}
		}
		w.max = max(w.max, n)
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { observe() }, UpdateFunc: func(_, _ any) { observe() }, DeleteFunc: func(any) { observe() },
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); f.Shutdown() })
	f.Start(ctx.Done())
	f.WaitForCacheSync(ctx.Done())
	return w
}

func TestJob(t *testing.T) {
	e := start(t)
	ctx := context.Background()

	t.Run("CompletionsWithParallelism", func(t *testing.T) {
		w := watchActive(t, e, "five")
		if _, err := e.c.BatchV1().Jobs(e.ns).Create(ctx, newJob("five", 5, 2, 0, 300*time.Millisecond), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		j := waitCondition(t, e, "five", batchv1.JobComplete, batchv1.JobReasonCompletionsReached)
		if !job.HasCondition(j, batchv1.JobSuccessCriteriaMet) {
			t.Errorf("no SuccessCriteriaMet condition: %+v", j.Status.Conditions)
		}
		st := j.Status
		pods := jobPods(t, e, j)
		if st.Succeeded != 5 || st.Failed != 0 || st.Active != 0 || st.CompletionTime == nil || st.StartTime == nil {
			// CI saw Succeeded 6 with 5 pods once (not reproduced in 40
			// runs under -race); the likely cause, a sync on a job cache
			// older than the controller's last write, is held back since
			// (TestStaleJobCacheCreatesNoPod). Say which pods there were.
			t.Errorf("status %+v", st)
			for _, p := range pods {
				t.Logf("pod %s uid %s phase %s finalizers %v deleting %v start %v", p.Name, p.UID, p.Status.Phase, p.Finalizers, p.DeletionTimestamp != nil, p.Status.StartTime)
			}
		}
		if u := st.UncountedTerminatedPods; u != nil && len(u.Succeeded)+len(u.Failed) > 0 {
			t.Errorf("uncounted pods left: %+v", u)
		}
		if len(pods) != 5 {
			t.Errorf("%d pods, want 5", len(pods))
		}
		noTrackingFinalizers(t, pods)
		w.mu.Lock()
		peak := w.max
		w.mu.Unlock()
		if peak > 2 || peak < 1 {
			t.Errorf("at most %d pods active at once, want 2", peak)
		}
	})

	t.Run("BackoffLimitExceeded", func(t *testing.T) {
		jb := newJob("failing", 1, 1, 1, 0)
		jb.Spec.BackoffLimit = ptr(int32(2))
		if _, err := e.c.BatchV1().Jobs(e.ns).Create(ctx, jb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		j := waitCondition(t, e, "failing", batchv1.JobFailed, batchv1.JobReasonBackoffLimitExceeded)
		if c := job.FindCondition(j, batchv1.JobFailureTarget); c == nil || c.Reason != batchv1.JobReasonBackoffLimitExceeded {
			t.Errorf("FailureTarget condition %+v", c)
		}
		if j.Status.Failed != 3 || j.Status.Succeeded != 0 || j.Status.Active != 0 {
			t.Errorf("status %+v", j.Status)
		}
		pods := jobPods(t, e, j)
		if len(pods) != 3 {
			t.Errorf("%d pods, want 3 (backoffLimit 2 + 1)", len(pods))
		}
		noTrackingFinalizers(t, pods)
	})

	t.Run("Indexed", func(t *testing.T) {
		jb := newJob("indexed", 4, 2, 0, 100*time.Millisecond)
		jb.Spec.CompletionMode = ptr(batchv1.IndexedCompletion)
		if _, err := e.c.BatchV1().Jobs(e.ns).Create(ctx, jb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		j := waitCondition(t, e, "indexed", batchv1.JobComplete, batchv1.JobReasonCompletionsReached)
		if j.Status.CompletedIndexes != "0-3" || j.Status.Succeeded != 4 {
			t.Errorf("status %+v", j.Status)
		}
		pods := jobPods(t, e, j)
		var got []int
		for _, p := range pods {
			ix := p.Annotations[batchv1.JobCompletionIndexAnnotation]
			if p.Labels[batchv1.JobCompletionIndexAnnotation] != ix {
				t.Errorf("pod %s: label %q, annotation %q", p.Name, p.Labels[batchv1.JobCompletionIndexAnnotation], ix)
			}
			if p.Spec.Hostname != "indexed-"+ix {
				t.Errorf("pod %s: hostname %q", p.Name, p.Spec.Hostname)
			}
			env := p.Spec.Containers[0].Env
			if len(env) != 1 || env[0].Name != "JOB_COMPLETION_INDEX" || env[0].ValueFrom == nil || env[0].ValueFrom.FieldRef == nil {
				t.Errorf("pod %s: env %+v", p.Name, env)
			}
			n, _ := strconv.Atoi(ix)
			got = append(got, n)
		}
		sort.Ints(got)
		if fmt.Sprint(got) != "[0 1 2 3]" {
			t.Errorf("pod indexes %v, want each of 0..3 once", got)
		}
		noTrackingFinalizers(t, pods)
	})

	t.Run("PodFailurePolicyFailJob", func(t *testing.T) {
		jb := newJob("policy", 3, 1, 42, 0)
		jb.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{
			Action:      batchv1.PodFailurePolicyActionFailJob,
			OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{42}},
		}}}
		if _, err := e.c.BatchV1().Jobs(e.ns).Create(ctx, jb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		j := waitCondition(t, e, "policy", batchv1.JobFailed, batchv1.JobReasonPodFailurePolicy)
		if j.Status.Failed != 1 || len(jobPods(t, e, j)) != 1 {
			t.Errorf("status %+v, want one failed pod and no retry", j.Status)
		}
	})

	t.Run("ActiveDeadline", func(t *testing.T) {
		jb := newJob("deadline", 1, 2, 0, time.Hour)
		jb.Spec.Completions = nil
		jb.Spec.ActiveDeadlineSeconds = ptr(int64(1))
		if _, err := e.c.BatchV1().Jobs(e.ns).Create(ctx, jb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		j := waitCondition(t, e, "deadline", batchv1.JobFailed, batchv1.JobReasonDeadlineExceeded)
		eventually(t, "deadline pods deleted", 30*time.Second, func() error {
			if n := len(jobPods(t, e, j)); n != 0 {
				return fmt.Errorf("%d pods left", n)
			}
			return nil
		})
	})

	t.Run("Suspend", func(t *testing.T) {
		jb := newJob("suspended", 2, 2, 0, 0)
		jb.Spec.Suspend = ptr(true)
		j, err := e.c.BatchV1().Jobs(e.ns).Create(ctx, jb, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		waitCondition(t, e, "suspended", batchv1.JobSuspended, "JobSuspended")
		if n := len(jobPods(t, e, j)); n != 0 {
			t.Fatalf("suspended job has %d pods", n)
		}
		eventually(t, "resume", 10*time.Second, func() error {
			cur, err := e.c.BatchV1().Jobs(e.ns).Get(ctx, "suspended", metav1.GetOptions{})
			if err != nil {
				return err
			}
			cur.Spec.Suspend = ptr(false)
			_, err = e.c.BatchV1().Jobs(e.ns).Update(ctx, cur, metav1.UpdateOptions{})
			return err
		})
		j = waitCondition(t, e, "suspended", batchv1.JobComplete, batchv1.JobReasonCompletionsReached)
		if c := job.FindCondition(j, batchv1.JobSuspended); c == nil || c.Status != corev1.ConditionFalse || c.Reason != "JobResumed" {
			t.Errorf("Suspended condition after resume: %+v", c)
		}
	})
}

// TestJobControllerRestart stops the controller mid-job and starts a new
// one: finalizer tracking must neither lose nor double-count a pod, and no
// extra pod may be created.
func TestJobControllerRestart(t *testing.T) {
	s := testserver.Start(t, func(c *server.Config) { c.Disable = append(c.Disable, job.Name) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nodes, err := hollow.Start(ctx, s.Config, hollow.Options{Nodes: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer nodes.Stop()
	e := &env{c: s.Client, ns: "default"}
	stop := e.runController(t)
	t.Cleanup(stop)
	if _, err := e.c.BatchV1().Jobs(e.ns).Create(ctx, newJob("restart", 8, 3, 0, 200*time.Millisecond), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "some pods counted", 60*time.Second, func() error {
		j, err := e.c.BatchV1().Jobs(e.ns).Get(ctx, "restart", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if j.Status.Succeeded < 2 {
			return fmt.Errorf("succeeded %d", j.Status.Succeeded)
		}
		return nil
	})
	stop()
	t.Cleanup(e.runController(t))
	j := waitCondition(t, e, "restart", batchv1.JobComplete, batchv1.JobReasonCompletionsReached)
	pods := jobPods(t, e, j)
	if j.Status.Succeeded != 8 || len(pods) != 8 {
		t.Errorf("succeeded %d with %d pods, want 8 and 8", j.Status.Succeeded, len(pods))
	}
	noTrackingFinalizers(t, pods)
}

func ptr[T any](v T) *T { return &v }

// TestClaimsOwnPodsAndOrphansOnly: a Job whose selector also matches the
// pod of another Job neither counts nor adopts it, and adopts a matching
// orphan as its one active pod instead of creating one; when the other Job
// is deleted, its pod (found by the gone Job's UID) loses the tracking
// finalizer. The pods are read through the controller-UID index, so a
// wrong index key shows up here as a pod too many, a wrong count or a
// finalizer left behind. The pods are never scheduled, so nothing but the
// controller touches them, and the garbage collector is off, so only the
// Job's delete event leads to the finalizer's removal.
func TestClaimsOwnPodsAndOrphansOnly(t *testing.T) {
	s := testserver.Start(t, func(c *server.Config) { c.Disable = append(c.Disable, job.Name, "garbage-collector-controller") })
	e := &env{c: s.Client, ns: "default"}
	ctx := context.Background()
	const unscheduled = "no-such-scheduler"
	shared := func(name string, selector map[string]string) *batchv1.Job {
		j := newJob(name, 1, 1, 0, time.Hour)
		j.Spec.ManualSelector = ptr(true)
		j.Spec.Selector = &metav1.LabelSelector{MatchLabels: selector}
		j.Spec.Template.Labels = map[string]string{"group": "shared", "side": name}
		j.Spec.Template.Spec.SchedulerName = unscheduled
		return j
	}
	pod := func(name, side string, owner *batchv1.Job) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"group": "shared", "side": side}},
			Spec: corev1.PodSpec{SchedulerName: unscheduled, RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "main", Image: "busybox"}}},
		}
		if owner != nil {
			p.OwnerReferences = []metav1.OwnerReference{*podutil.NewControllerRef(owner, batchv1.SchemeGroupVersion.WithKind("Job"))}
			p.Finalizers = []string{batchv1.JobTrackingFinalizer}
		}
		got, err := e.c.CoreV1().Pods(e.ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	// other selects only its side; mine selects both.
	other, err := e.c.BatchV1().Jobs(e.ns).Create(ctx, shared("other", map[string]string{"group": "shared", "side": "other"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	theirs := pod("theirs", "other", other)
	stray := pod("stray", "mine", nil)
	mine, err := e.c.BatchV1().Jobs(e.ns).Create(ctx, shared("mine", map[string]string{"group": "shared"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.runController(t))

	pods := func() (map[string]corev1.Pod, error) {
		l, err := e.c.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{LabelSelector: "group=shared"})
		if err != nil {
			return nil, err
		}
		out := map[string]corev1.Pod{}
		for _, p := range l.Items {
			out[p.Name] = p
		}
		return out, nil
	}
	controller := func(p corev1.Pod) types.UID {
		if ref := metav1.GetControllerOf(&p); ref != nil {
			return ref.UID
		}
		return ""
	}
	eventually(t, "stray adopted by mine, theirs kept by other", 60*time.Second, func() error {
		for _, j := range []*batchv1.Job{mine, other} {
			cur, err := e.c.BatchV1().Jobs(e.ns).Get(ctx, j.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if cur.Status.Active != 1 {
				return fmt.Errorf("%s: status %+v, want 1 active", j.Name, cur.Status)
			}
		}
		ps, err := pods()
		if err != nil {
			return err
		}
		if len(ps) != 2 || ps["stray"].UID != stray.UID || ps["theirs"].UID != theirs.UID {
			return fmt.Errorf("pods %v, want stray and theirs only", slices.Sorted(maps.Keys(ps)))
		}
		if controller(ps["stray"]) != mine.UID || controller(ps["theirs"]) != other.UID {
			return fmt.Errorf("stray controlled by %q (mine %s), theirs by %q (other %s)",
				controller(ps["stray"]), mine.UID, controller(ps["theirs"]), other.UID)
		}
		return nil
	})

	background := metav1.DeletePropagationBackground
	if err := e.c.BatchV1().Jobs(e.ns).Delete(ctx, "other", metav1.DeleteOptions{PropagationPolicy: &background}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "tracking finalizer dropped from the gone job's pod", 30*time.Second, func() error {
		p, err := e.c.CoreV1().Pods(e.ns).Get(ctx, "theirs", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if slices.Contains(p.Finalizers, batchv1.JobTrackingFinalizer) {
			return fmt.Errorf("finalizers %v", p.Finalizers)
		}
		return nil
	})
	ps, err := pods()
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || controller(ps["stray"]) != mine.UID || slices.Contains(ps["stray"].Finalizers, batchv1.JobTrackingFinalizer) {
		t.Errorf("afterwards: pods %v, stray controlled by %q with finalizers %v", slices.Sorted(maps.Keys(ps)), controller(ps["stray"]), ps["stray"].Finalizers)
	}
}
