package scheduler_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/nodeagent/hollow"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

type env struct {
	t      *testing.T
	ctx    context.Context
	s      *testserver.Server
	client kubernetes.Interface
}

func start(t *testing.T, nodes int, opts hollow.Options) *env {
	t.Helper()
	s := testserver.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	if nodes > 0 {
		opts.Nodes = nodes
		c, err := hollow.Start(ctx, s.Config, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Stop)
	}
	return &env{t: t, ctx: ctx, s: s, client: s.Client}
}

func podSpec(name string, mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": "test"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}}},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

func requests(cpu, mem string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		rl := corev1.ResourceList{}
		if cpu != "" {
			rl[corev1.ResourceCPU] = resource.MustParse(cpu)
		}
		if mem != "" {
			rl[corev1.ResourceMemory] = resource.MustParse(mem)
		}
		p.Spec.Containers[0].Resources.Requests = rl
	}
}

func (e *env) create(p *corev1.Pod) *corev1.Pod {
	e.t.Helper()
	got, err := e.client.CoreV1().Pods(p.Namespace).Create(e.ctx, p, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatalf("create pod %s: %v", p.Name, err)
	}
	return got
}

// waitPod polls until cond holds for the pod.
func (e *env) waitPod(name string, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	e.t.Helper()
	var p *corev1.Pod
	err := wait.PollUntilContextTimeout(e.ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		var err error
		p, err = e.client.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		return err == nil && cond(p), nil
	})
	if err != nil {
		e.t.Fatalf("pod %s: waiting for %s: %v (last: spec.nodeName=%q status=%+v)", name, what, err, nodeName(p), status(p))
	}
	return p
}

func nodeName(p *corev1.Pod) string {
	if p == nil {
		return ""
	}
	return p.Spec.NodeName
}

func status(p *corev1.Pod) any {
	if p == nil {
		return nil
	}
	return p.Status
}

func (e *env) waitRunning(name string) *corev1.Pod {
	return e.waitPod(name, "Running", func(p *corev1.Pod) bool { return p.Spec.NodeName != "" && p.Status.Phase == corev1.PodRunning })
}

func unschedulable(p *corev1.Pod) (string, bool) {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return c.Message, true
		}
	}
	return "", false
}

func (e *env) waitUnschedulable(name string) string {
	p := e.waitPod(name, "PodScheduled=False", func(p *corev1.Pod) bool { _, ok := unschedulable(p); return ok })
	msg, _ := unschedulable(p)
	return msg
}

func (e *env) events(name, reason string) []corev1.Event {
	e.t.Helper()
	var out []corev1.Event
	_ = wait.PollUntilContextTimeout(e.ctx, 100*time.Millisecond, 15*time.Second, true, func(ctx context.Context) (bool, error) {
		list, err := e.client.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("involvedObject.name", name).String()})
		if err != nil {
			return false, nil
		}
		out = out[:0]
		for _, ev := range list.Items {
			if ev.Reason == reason && ev.InvolvedObject.Name == name {
				out = append(out, ev)
			}
		}
		return len(out) > 0, nil
	})
	return out
}

func TestPodsAreBoundAndRun(t *testing.T) {
	e := start(t, 3, hollow.Options{})
	for i := 0; i < 10; i++ {
		e.create(podSpec(fmt.Sprintf("p%d", i)))
	}
	used := map[string]int{}
	for i := 0; i < 10; i++ {
		p := e.waitRunning(fmt.Sprintf("p%d", i))
		if !strings.HasPrefix(p.Spec.NodeName, "hollow-node-") {
			t.Fatalf("bound to %q", p.Spec.NodeName)
		}
		used[p.Spec.NodeName]++
	}
	if len(used) < 2 {
		t.Errorf("10 pods on 3 empty nodes all went to %v; scoring should spread them", used)
	}
	evs := e.events("p0", "Scheduled")
	if len(evs) == 0 || !strings.HasPrefix(evs[0].Message, "Successfully assigned default/p0 to hollow-node-") {
		t.Fatalf("Scheduled event = %+v", evs)
	}
	if evs[0].Source.Component != "default-scheduler" {
		t.Errorf("event source = %q", evs[0].Source.Component)
	}
}

func TestResourceFitUnschedulableMessage(t *testing.T) {
	e := start(t, 3, hollow.Options{CPU: "2", Memory: "4Gi"})
	e.create(podSpec("big", requests("3", "")))
	msg := e.waitUnschedulable("big")
	want := "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.."
	if msg != want {
		t.Fatalf("message:\n got %q\nwant %q", msg, want)
	}
	evs := e.events("big", "FailedScheduling")
	if len(evs) == 0 || evs[0].Message != want || evs[0].Type != corev1.EventTypeWarning {
		t.Fatalf("FailedScheduling events = %+v", evs)
	}
	// A pod that fits is still placed, and filling a node is respected.
	e.create(podSpec("half", requests("1500m", "")))
	e.waitRunning("half")
}
