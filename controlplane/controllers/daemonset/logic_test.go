package daemonset

import (
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/internal/history"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func node(name string, lbls map[string]string, taints ...corev1.Taint) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls}, Spec: corev1.NodeSpec{Taints: taints}}
}

func testDS() *appsv1.DaemonSet {
	one, zero := intstr.FromInt32(1), intstr.FromInt32(0)
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "ds", Namespace: "ns", UID: "uid"},
		Spec: appsv1.DaemonSetSpec{
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: &one, MaxSurge: &zero}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "ds"}}},
		},
	}
}

func TestShouldRun(t *testing.T) {
	noSched := corev1.Taint{Key: "k", Value: "v", Effect: corev1.TaintEffectNoSchedule}
	noExec := corev1.Taint{Key: "k", Value: "v", Effect: corev1.TaintEffectNoExecute}
	for _, tc := range []struct {
		name           string
		edit           func(*appsv1.DaemonSet)
		node           *corev1.Node
		run, continue_ bool
	}{
		{"plain node", nil, node("n", nil), true, true},
		{"selector matches", func(d *appsv1.DaemonSet) { d.Spec.Template.Spec.NodeSelector = map[string]string{"role": "edge"} }, node("n", map[string]string{"role": "edge"}), true, true},
		{"selector misses", func(d *appsv1.DaemonSet) { d.Spec.Template.Spec.NodeSelector = map[string]string{"role": "edge"} }, node("n", nil), false, false},
		{"affinity misses", func(d *appsv1.DaemonSet) {
			d.Spec.Template.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}}}}}}}
		}, node("n", map[string]string{"zone": "b"}), false, false},
		{"NoSchedule taint keeps running pods", nil, node("n", nil, noSched), false, true},
		{"NoExecute taint evicts", nil, node("n", nil, noExec), false, false},
		{"tolerated taint", func(d *appsv1.DaemonSet) {
			d.Spec.Template.Spec.Tolerations = []corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists}}
		}, node("n", nil, noExec), true, true},
		{"not-ready and unreachable are tolerated by default", nil, node("n", nil,
			corev1.Taint{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoExecute},
			corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute},
			corev1.Taint{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule},
			corev1.Taint{Key: corev1.TaintNodeDiskPressure, Effect: corev1.TaintEffectNoSchedule}), true, true},
		{"network-unavailable only for host network", nil, node("n", nil, corev1.Taint{Key: corev1.TaintNodeNetworkUnavailable, Effect: corev1.TaintEffectNoSchedule}), false, true},
		{"host network tolerates network-unavailable", func(d *appsv1.DaemonSet) { d.Spec.Template.Spec.HostNetwork = true },
			node("n", nil, corev1.Taint{Key: corev1.TaintNodeNetworkUnavailable, Effect: corev1.TaintEffectNoSchedule}), true, true},
		{"template nodeName elsewhere", func(d *appsv1.DaemonSet) { d.Spec.Template.Spec.NodeName = "other" }, node("n", nil), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ds := testDS()
			if tc.edit != nil {
				tc.edit(ds)
			}
			run, cont := ShouldRun(ds, tc.node)
			if run != tc.run || cont != tc.continue_ {
				t.Fatalf("ShouldRun = %v, %v; want %v, %v", run, cont, tc.run, tc.continue_)
			}
		})
	}
}

func TestNewPodBindsByAffinity(t *testing.T) {
	ds := testDS()
	ds.Spec.Template.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpExists}}}}},
		PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{Weight: 1}},
	}}
	ds.Spec.Template.Spec.Tolerations = []corev1.Toleration{{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr(int64(5))}}
	p := NewPod(ds, "node-1", "abc")
	if TargetNode(p) != "node-1" || p.Spec.NodeName != "" {
		t.Fatalf("target %q nodeName %q affinity %+v", TargetNode(p), p.Spec.NodeName, p.Spec.Affinity)
	}
	if len(p.Spec.Affinity.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 {
		t.Fatal("preferred terms dropped")
	}
	if p.Labels[history.HashLabel] != "abc" || p.Labels["app"] != "ds" || p.GenerateName != "ds-" {
		t.Fatalf("meta %+v", p.ObjectMeta)
	}
	if len(p.Spec.Tolerations) != 6 {
		t.Fatalf("tolerations %+v", p.Spec.Tolerations)
	}
	for _, tol := range p.Spec.Tolerations {
		if tol.Key == corev1.TaintNodeNotReady && tol.TolerationSeconds != nil {
			t.Fatalf("not-ready toleration keeps tolerationSeconds: %+v", tol)
		}
	}
	if ds.Spec.Template.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchFields != nil {
		t.Fatal("template mutated")
	}
}

// dpod is a daemon pod on node at hash, ready or not.
func dpod(name, nodeName, hash string, ready bool, age int) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: map[string]string{history.HashLabel: hash},
		CreationTimestamp: metav1.NewTime(time.Unix(1000+int64(age), 0))}, Spec: corev1.PodSpec{NodeName: nodeName}}
	p.Status.Phase = corev1.PodRunning
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}
	return p
}

func names(ps []*corev1.Pod) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	sort.Strings(out)
	return out
}

func TestManage(t *testing.T) {
	ds := testDS()
	nodes := []*corev1.Node{node("a", nil), node("b", nil), node("c", nil, corev1.Taint{Key: "k", Effect: corev1.TaintEffectNoExecute})}
	byNode := map[string][]*corev1.Pod{
		"b": {dpod("b2", "b", "h", true, 2), dpod("b1", "b", "h", true, 1)},
		"c": {dpod("c1", "c", "h", true, 1)},
	}
	plan := Manage(ds, nodes, byNode, "h")
	if !slices.Equal(plan.CreateOn, []string{"a"}) || !slices.Equal(names(plan.Delete), []string{"b2", "c1"}) {
		t.Fatalf("plan create %v delete %v", plan.CreateOn, names(plan.Delete))
	}
	failed := dpod("a1", "a", "h", false, 1)
	failed.Status.Phase = corev1.PodFailed
	plan = Manage(ds, nodes[:1], map[string][]*corev1.Pod{"a": {failed}}, "h")
	if len(plan.CreateOn) != 0 || len(plan.FailedPods) != 1 || !slices.Equal(names(plan.Delete), []string{"a1"}) {
		t.Fatalf("failed pod plan %+v", plan)
	}
}

func TestRollingUpdate(t *testing.T) {
	now := time.Now()
	nodes := []*corev1.Node{node("a", nil), node("b", nil), node("c", nil), node("d", nil)}
	old := func() map[string][]*corev1.Pod {
		m := map[string][]*corev1.Pod{}
		for _, n := range nodes {
			m[n.Name] = []*corev1.Pod{dpod(n.Name+"-old", n.Name, "old", true, 1)}
		}
		return m
	}
	t.Run("maxUnavailable 2 deletes two old pods", func(t *testing.T) {
		ds := testDS()
		two := intstr.FromInt32(2)
		ds.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable = &two
		plan := RollingUpdate(ds, nodes, old(), "new", now)
		if len(plan.Delete) != 2 || len(plan.CreateOn) != 0 {
			t.Fatalf("plan %v %v", names(plan.Delete), plan.CreateOn)
		}
	})
	t.Run("an unready new pod uses the budget", func(t *testing.T) {
		ds := testDS()
		m := old()
		m["a"] = []*corev1.Pod{dpod("a-new", "a", "new", false, 2)}
		if plan := RollingUpdate(ds, nodes, m, "new", now); len(plan.Delete) != 0 {
			t.Fatalf("deleted %v while a new pod is unavailable", names(plan.Delete))
		}
	})
	t.Run("unavailable old pods go at once", func(t *testing.T) {
		ds := testDS()
		m := old()
		m["a"] = []*corev1.Pod{dpod("a-new", "a", "new", false, 2)}
		m["b"] = []*corev1.Pod{dpod("b-old", "b", "old", false, 1)}
		if plan := RollingUpdate(ds, nodes, m, "new", now); !slices.Equal(names(plan.Delete), []string{"b-old"}) {
			t.Fatalf("deleted %v", names(plan.Delete))
		}
	})
	t.Run("10 percent rounds down but never to zero", func(t *testing.T) {
		ds := testDS()
		pct := intstr.FromString("10%")
		ds.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable = &pct
		if plan := RollingUpdate(ds, nodes, old(), "new", now); len(plan.Delete) != 1 {
			t.Fatalf("deleted %v", names(plan.Delete))
		}
	})
	t.Run("surge creates beside old pods then deletes them", func(t *testing.T) {
		ds := testDS()
		zero, one := intstr.FromInt32(0), intstr.FromInt32(1)
		ds.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{MaxUnavailable: &zero, MaxSurge: &one}
		plan := RollingUpdate(ds, nodes, old(), "new", now)
		if len(plan.Delete) != 0 || !slices.Equal(plan.CreateOn, []string{"a"}) {
			t.Fatalf("plan %v %v", names(plan.Delete), plan.CreateOn)
		}
		m := old()
		m["a"] = append(m["a"], dpod("a-new", "a", "new", false, 2))
		if plan := RollingUpdate(ds, nodes, m, "new", now); len(plan.Delete) != 0 || len(plan.CreateOn) != 0 {
			t.Fatalf("surged past maxSurge: %v %v", names(plan.Delete), plan.CreateOn)
		}
		m["a"][1] = dpod("a-new", "a", "new", true, 2)
		if plan := RollingUpdate(ds, nodes, m, "new", now); !slices.Equal(names(plan.Delete), []string{"a-old"}) || !slices.Equal(plan.CreateOn, []string{"b"}) {
			t.Fatalf("plan %v %v", names(plan.Delete), plan.CreateOn)
		}
	})
}

func TestComputeStatus(t *testing.T) {
	ds := testDS()
	ds.Generation = 3
	ds.Spec.Template.Spec.NodeSelector = map[string]string{"run": "yes"}
	yes := map[string]string{"run": "yes"}
	nodes := []*corev1.Node{node("a", yes), node("b", yes), node("c", yes), node("d", nil)}
	byNode := map[string][]*corev1.Pod{
		"a": {dpod("a1", "a", "new", true, 1)},
		"b": {dpod("b1", "b", "old", false, 1)},
		"d": {dpod("d1", "d", "new", true, 1)},
	}
	st := ComputeStatus(ds, nodes, byNode, "new", 0, time.Now())
	want := appsv1.DaemonSetStatus{ObservedGeneration: 3, DesiredNumberScheduled: 3, CurrentNumberScheduled: 2, NumberMisscheduled: 1,
		NumberReady: 1, NumberAvailable: 1, UpdatedNumberScheduled: 1, NumberUnavailable: 2}
	if fmt.Sprintf("%+v", st) != fmt.Sprintf("%+v", want) {
		t.Fatalf("status\n%+v\nwant\n%+v", st, want)
	}
}

func ptr[T any](v T) *T { return &v }
