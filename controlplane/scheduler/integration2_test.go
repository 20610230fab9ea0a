package scheduler_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/scheduler"
	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	"github.com/skiffhq/skiff/nodeagent/hollow"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// zoned labels node i with zone-(i%2) and tier=gold for even nodes; node 2
// carries a NoSchedule taint.
func zoned(i int, n *corev1.Node) {
	n.Labels[corev1.LabelTopologyZone] = fmt.Sprintf("zone-%d", i%2)
	if i%2 == 0 {
		n.Labels["tier"] = "gold"
	}
	if i == 2 {
		n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule})
	}
}

func TestSelectorsAffinityAndTaints(t *testing.T) {
	e := start(t, 4, hollow.Options{Customize: zoned})
	// nodeSelector: only even nodes (0 and 2); node 2 is tainted → node 0.
	e.create(podSpec("sel", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"tier": "gold"} }))
	if got := e.waitRunning("sel").Spec.NodeName; got != "hollow-node-0" {
		t.Fatalf("nodeSelector pod on %s, want hollow-node-0", got)
	}
	// Tolerating the taint and requiring node 2 by name through affinity.
	e.create(podSpec("tol", func(p *corev1.Pod) {
		p.Spec.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "db", Effect: corev1.TaintEffectNoSchedule}}
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{"hollow-node-2"}}}}},
		}}}
	}))
	if got := e.waitRunning("tol").Spec.NodeName; got != "hollow-node-2" {
		t.Fatalf("tolerating pod on %s, want hollow-node-2", got)
	}
	// Without the toleration node 2 is refused: the message names the taint.
	e.create(podSpec("notol", func(p *corev1.Pod) {
		p.Spec.NodeSelector = map[string]string{corev1.LabelHostname: "hollow-node-2"}
	}))
	msg := e.waitUnschedulable("notol")
	want := "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling.."
	if msg != want {
		t.Fatalf("message:\n got %q\nwant %q", msg, want)
	}
	// Pod anti-affinity on zones: two pods of one app land in different zones.
	anti := func(p *corev1.Pod) {
		p.Labels = map[string]string{"app": "spread"}
		p.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "spread"}}, TopologyKey: corev1.LabelTopologyZone,
		}}}}
	}
	e.create(podSpec("a1", anti))
	n1 := e.waitRunning("a1").Spec.NodeName
	e.create(podSpec("a2", anti))
	n2 := e.waitRunning("a2").Spec.NodeName
	zone := func(n string) string { var i int; fmt.Sscanf(n, "hollow-node-%d", &i); return fmt.Sprint(i % 2) }
	if zone(n1) == zone(n2) {
		t.Fatalf("anti-affine pods share zone: %s and %s", n1, n2)
	}
	e.create(podSpec("a3", anti))
	// Both zones hold a pod whose anti-affinity rejects a3 (checked before
	// a3's own terms, as upstream); the tainted node is unresolvable.
	wantAnti := "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, 3 node(s) didn't satisfy existing pods anti-affinity rules. preemption: 0/4 nodes are available: 1 Preemption is not helpful for scheduling, 3 No preemption victims found for incoming pod.."
	if msg := e.waitUnschedulable("a3"); msg != wantAnti {
		t.Fatalf("third anti-affine pod:\n got %q\nwant %q", msg, wantAnti)
	}
	// Pod affinity: follows a1 into its zone.
	e.create(podSpec("follow", func(p *corev1.Pod) {
		p.Spec.Affinity = &corev1.Affinity{PodAffinity: &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
			LabelSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{"spread"}}}},
			TopologyKey:   corev1.LabelHostname,
		}}}}
	}))
	if got := e.waitRunning("follow").Spec.NodeName; got != n1 && got != n2 {
		t.Fatalf("affine pod on %s, want %s or %s", got, n1, n2)
	}
}

func TestOtherSchedulerNameIsLeftAlone(t *testing.T) {
	e := start(t, 2, hollow.Options{})
	e.create(podSpec("mine", func(p *corev1.Pod) { p.Spec.SchedulerName = "my-scheduler" }))
	e.create(podSpec("control"))
	e.waitRunning("control")
	time.Sleep(2 * time.Second)
	p, err := e.client.CoreV1().Pods("default").Get(e.ctx, "mine", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Spec.NodeName != "" || len(p.Status.Conditions) != 0 {
		t.Fatalf("pod for another scheduler was touched: node=%q conditions=%+v", p.Spec.NodeName, p.Status.Conditions)
	}
}

// picky is a custom plugin registered from this test package: it only
// admits nodes whose name ends in the configured suffix, and counts binds.
type picky struct {
	suffix string
	binds  *atomic.Int32
}

var pickyBinds atomic.Int32

func (picky) Name() string { return "Picky" }

func (p picky) Filter(_ context.Context, _ *framework.CycleState, _ *corev1.Pod, ni *framework.NodeInfo) *framework.Status {
	if !strings.HasSuffix(ni.Node().Name, p.suffix) {
		return framework.NewStatus(framework.UnschedulableAndUnresolvable, "node(s) were not picked")
	}
	return nil
}

func (p picky) PostBind(context.Context, *framework.CycleState, *corev1.Pod, string) { p.binds.Add(1) }

func init() {
	framework.Register("Picky", func(args json.RawMessage, _ framework.Handle) (framework.Plugin, error) {
		var a struct {
			Suffix string `json:"suffix"`
		}
		if err := framework.DecodeArgs(args, &a); err != nil {
			return nil, err
		}
		return picky{suffix: a.Suffix, binds: &pickyBinds}, nil
	})
}

func TestSecondProfileWithCustomPlugin(t *testing.T) {
	e := start(t, 3, hollow.Options{})
	cfg, err := scheduler.ParseConfig([]byte(`
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: picky-scheduler
  plugins:
    multiPoint:
      enabled:
      - name: Picky
  pluginConfig:
  - name: Picky
    args:
      suffix: "-1"
- schedulerName: packing-scheduler
  pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy:
        type: MostAllocated
        resources:
        - name: cpu
          weight: 1
`))
	if err != nil {
		t.Fatal(err)
	}
	sched, err := scheduler.New(scheduler.Options{Client: e.client, Config: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- sched.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	for i := 0; i < 3; i++ {
		e.create(podSpec(fmt.Sprintf("picky-%d", i), func(p *corev1.Pod) { p.Spec.SchedulerName = "picky-scheduler" }))
	}
	for i := 0; i < 3; i++ {
		p := e.waitRunning(fmt.Sprintf("picky-%d", i))
		if p.Spec.NodeName != "hollow-node-1" {
			t.Fatalf("picky pod on %s", p.Spec.NodeName)
		}
	}
	if n := pickyBinds.Load(); n != 3 {
		t.Errorf("PostBind ran %d times, want 3", n)
	}
	if evs := e.events("picky-0", "Scheduled"); len(evs) == 0 || evs[0].Source.Component != "picky-scheduler" {
		t.Errorf("Scheduled event source: %+v", evs)
	}
	// MostAllocated packs: every pod of the second profile lands on one node.
	for i := 0; i < 4; i++ {
		e.create(podSpec(fmt.Sprintf("pack-%d", i), requests("500m", ""), func(p *corev1.Pod) { p.Spec.SchedulerName = "packing-scheduler" }))
		e.waitRunning(fmt.Sprintf("pack-%d", i))
	}
	nodes := map[string]bool{}
	for i := 0; i < 4; i++ {
		p, _ := e.client.CoreV1().Pods("default").Get(e.ctx, fmt.Sprintf("pack-%d", i), metav1.GetOptions{})
		nodes[p.Spec.NodeName] = true
	}
	if len(nodes) != 1 {
		t.Errorf("MostAllocated profile spread pods over %v", nodes)
	}
}

func TestPreemption(t *testing.T) {
	e := start(t, 1, hollow.Options{CPU: "2"})
	for _, pc := range []schedulingv1.PriorityClass{
		{ObjectMeta: metav1.ObjectMeta{Name: "low"}, Value: 10},
		{ObjectMeta: metav1.ObjectMeta{Name: "high"}, Value: 1000},
	} {
		if _, err := e.client.SchedulingV1().PriorityClasses().Create(e.ctx, &pc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond) // PriorityClass informer
	e.create(podSpec("victim", requests("1500m", ""), func(p *corev1.Pod) { p.Spec.PriorityClassName = "low" }))
	victim := e.waitRunning("victim")
	e.create(podSpec("vip", requests("1500m", ""), func(p *corev1.Pod) { p.Spec.PriorityClassName = "high" }))
	p := e.waitRunning("vip")
	if p.Spec.NodeName != "hollow-node-0" {
		t.Fatalf("preemptor on %q", p.Spec.NodeName)
	}
	if p.Status.NominatedNodeName != "hollow-node-0" {
		t.Errorf("nominatedNodeName = %q, want hollow-node-0", p.Status.NominatedNodeName)
	}
	cur, err := e.client.CoreV1().Pods("default").Get(e.ctx, "victim", metav1.GetOptions{})
	if err == nil && cur.UID == victim.UID {
		t.Fatalf("victim still exists: %+v", cur.Status)
	}
	if evs := e.events("victim", "Preempted"); len(evs) == 0 || !strings.Contains(evs[0].Message, "Preempted by pod "+string(p.UID)+" on node hollow-node-0") {
		t.Errorf("Preempted event: %+v", evs)
	}
	// A pod of equal priority does not preempt: it stays pending.
	e.create(podSpec("peer", requests("1500m", ""), func(p *corev1.Pod) { p.Spec.PriorityClassName = "high" }))
	if msg := e.waitUnschedulable("peer"); !strings.Contains(msg, "1 Insufficient cpu") || !strings.Contains(msg, "No preemption victims found for incoming pod") {
		t.Fatalf("peer: %q", msg)
	}
}
