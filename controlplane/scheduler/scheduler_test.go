package scheduler

import (
	"fmt"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
)

func TestFitErrorMessage(t *testing.T) {
	st := framework.NewNodeToStatus(nil)
	st.Set("a", framework.NewStatus(framework.Unschedulable, "Insufficient cpu"))
	st.Set("b", framework.NewStatus(framework.UnschedulableAndUnresolvable, "node(s) had untolerated taint {key: value}"))
	st.Set("c", framework.NewStatus(framework.UnschedulableAndUnresolvable, "node(s) had untolerated taint {key: value}"))
	fe := &FitError{NumAllNodes: 3, Statuses: st, PostFilterMsg: "preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling."}
	want := "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {key: value}. preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling.."
	if fe.Error() != want {
		t.Fatalf("\n got %q\nwant %q", fe.Error(), want)
	}
	fe = &FitError{NumAllNodes: 2, Statuses: st, PreFilterMsg: "node(s) didn't satisfy plugin NodeAffinity"}
	if got := fe.Error(); got != "0/2 nodes are available: node(s) didn't satisfy plugin NodeAffinity." {
		t.Fatalf("prefilter message %q", got)
	}
}

func TestNumFeasibleNodesToFind(t *testing.T) {
	for _, tc := range []struct {
		pct        int32
		nodes, out int
	}{{0, 50, 50}, {0, 100, 100}, {0, 1000, 420}, {0, 5000, 500}, {0, 100000, 5000}, {10, 500, 100}, {100, 1000, 1000}, {30, 1000, 300}} {
		if got := numFeasibleNodesToFind(tc.pct, tc.nodes); got != tc.out {
			t.Errorf("pct %d nodes %d: %d, want %d", tc.pct, tc.nodes, got, tc.out)
		}
	}
}

func qpod(name string, prio int32) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID(name)}, Spec: corev1.PodSpec{Priority: &prio, SchedulerName: DefaultSchedulerName}}
}

func TestQueueOrderBackoffAndEvents(t *testing.T) {
	now := time.Unix(1000, 0)
	less := func(a, b *framework.QueuedPodInfo) bool {
		pa, pb := *a.Pod.Spec.Priority, *b.Pod.Spec.Priority
		return pa > pb || (pa == pb && a.Timestamp.Before(b.Timestamp))
	}
	events := map[string]map[string]sets.Set[framework.ClusterEvent]{DefaultSchedulerName: {"NodeResourcesFit": sets.New(framework.EventNodeAdd, framework.EventAssignedPodDelete)}}
	q := newSchedulingQueue(less, time.Second, 10*time.Second, events)
	q.now = func() time.Time { return now }
	q.Add(qpod("low", 1))
	now = now.Add(time.Millisecond)
	q.Add(qpod("high", 100))
	now = now.Add(time.Millisecond)
	q.Add(qpod("low2", 1))
	var order []string
	for i := 0; i < 3; i++ {
		order = append(order, q.Pop().Pod.Name)
	}
	if fmt.Sprint(order) != "[high low low2]" {
		t.Fatalf("pop order %v", order)
	}

	// Backoff doubles per attempt from 1s, capped at 10s.
	qp := &framework.QueuedPodInfo{PodInfo: framework.NewPodInfo(qpod("x", 0))}
	for attempts, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 9: 10 * time.Second} {
		qp.Attempts = attempts
		if got := q.backoffDuration(qp); got != want {
			t.Errorf("attempts %d: backoff %v, want %v", attempts, got, want)
		}
	}

	// An unschedulable pod waits for an event its rejecting plugin cares about.
	q.Add(qpod("fit", 0))
	p := q.Pop()
	p.UnschedulablePlugins = sets.New("NodeResourcesFit")
	cycle := q.SchedulingCycle()
	q.AddUnschedulable(p, cycle)
	if a, b, u := q.Len(); a != 0 || b != 0 || u != 1 {
		t.Fatalf("queues %d/%d/%d, want pod unschedulable", a, b, u)
	}
	q.MoveAllToActiveOrBackoff(framework.EventNodeUpdate) // not registered by the plugin
	if _, _, u := q.Len(); u != 1 {
		t.Fatal("irrelevant event moved the pod")
	}
	q.MoveAllToActiveOrBackoff(framework.EventAssignedPodDelete)
	if a, b, u := q.Len(); u != 0 || b != 1 || a != 0 {
		t.Fatalf("after relevant event during backoff: %d/%d/%d, want backoff", a, b, u)
	}
	now = now.Add(2 * time.Second)
	q.flush()
	if a, _, _ := q.Len(); a != 1 {
		t.Fatal("backoff did not complete")
	}
	p = q.Pop()
	// A failure in a cycle that saw a move request goes to backoff, not the pool.
	p.UnschedulablePlugins = sets.New("NodeResourcesFit")
	q.MoveAllToActiveOrBackoff(framework.EventNodeAdd)
	q.AddUnschedulable(p, q.SchedulingCycle())
	if _, b, u := q.Len(); b != 1 || u != 0 {
		t.Fatalf("pod parked despite a concurrent event: backoff %d unschedulable %d", b, u)
	}
	// Pods parked longer than 5 minutes are retried.
	q.Delete(p.Pod)
	q.Add(qpod("old", 0))
	p = q.Pop()
	p.UnschedulablePlugins = sets.New("NodeResourcesFit")
	q.AddUnschedulable(p, q.SchedulingCycle()+1)
	now = now.Add(6 * time.Minute)
	q.flush()
	if a, _, u := q.Len(); a != 1 || u != 0 {
		t.Fatalf("stale unschedulable pod not flushed: active %d unschedulable %d", a, u)
	}
}

func TestConfigMerge(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: a
  plugins:
    score:
      disabled:
      - name: ImageLocality
      enabled:
      - name: NodeAffinity
        weight: 7
    multiPoint:
      disabled:
      - name: InterPodAffinity
`))
	if err != nil {
		t.Fatal(err)
	}
	fwk, err := NewFrameworkForSnapshot(NewSnapshot(), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = fwk
	spec := cfg.Profiles[0].ProfileSpec()
	exp := spec.Expand(func(name, point string) bool {
		p, ok := fwk.Plugin(name)
		return ok && framework.Implements(p, point)
	})
	var score []string
	weights := map[string]int32{}
	for _, r := range exp[framework.PointScore] {
		score = append(score, r.Name)
		weights[r.Name] = r.Weight
	}
	if fmt.Sprint(score) != "[NodeAffinity TaintToleration NodeResourcesFit PodTopologySpread NodeResourcesBalancedAllocation]" {
		t.Fatalf("score plugins %v", score)
	}
	if weights["NodeAffinity"] != 7 || weights["TaintToleration"] != 3 {
		t.Fatalf("weights %v", weights)
	}
	for _, r := range exp[framework.PointFilter] {
		if r.Name == "InterPodAffinity" {
			t.Fatal("multiPoint-disabled plugin still filters")
		}
	}
	for _, bad := range []string{
		"apiVersion: kubescheduler.config.k8s.io/v1beta1\nkind: KubeSchedulerConfiguration\n",
		"apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nprofiles:\n- schedulerName: x\n- schedulerName: x\n",
		"apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nbogus: 1\n",
		"apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\npercentageOfNodesToScore: 101\n",
	} {
		if _, err := ParseConfig([]byte(bad)); err == nil {
			t.Errorf("accepted:\n%s", bad)
		}
	}
}
