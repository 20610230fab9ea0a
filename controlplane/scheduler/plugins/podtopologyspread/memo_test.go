package podtopologyspread_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/skiffhq/skiff/controlplane/scheduler"
	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	"github.com/skiffhq/skiff/controlplane/scheduler/plugins/podtopologyspread"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestPreFilterMemoAgreesWithPerPodMatching checks PreFilter, which matches
// each constraint's selector once per distinct namespace and label set,
// against the same state built pod by pod through AddPod. Pods share few
// label sets, and equal label sets occur in two namespaces.
func TestPreFilterMemoAgreesWithPerPodMatching(t *testing.T) {
	labelSets := []map[string]string{{"app": "web"}, {"app": "db"}, {"app": "web", "tier": "front"}, {"tier": "front"}, {}}
	selectors := []*metav1.LabelSelector{
		{MatchLabels: map[string]string{"app": "web"}},
		{MatchLabels: map[string]string{"tier": "front"}},
		{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpExists}}},
	}
	topo := []string{corev1.LabelHostname, corev1.LabelTopologyZone}
	ctx := context.Background()
	outcomes := map[string]int{}
	for seed := range 150 {
		r := rand.New(rand.NewPCG(uint64(seed), 11))
		var nodes []*corev1.Node
		for i := range 9 {
			nodes = append(nodes, node(fmt.Sprintf("n%d", i), fmt.Sprintf("z%d", i%3)))
		}
		var existing []*corev1.Pod
		for i := range 60 {
			p := pod(fmt.Sprintf("e%d", i), nodes[r.IntN(len(nodes))].Name)
			p.Labels = labelSets[r.IntN(len(labelSets))]
			if r.IntN(2) == 0 {
				p.Namespace = "other"
			}
			existing = append(existing, p)
		}
		var cs []corev1.TopologySpreadConstraint
		for j := range 1 + r.IntN(2) {
			cs = append(cs, corev1.TopologySpreadConstraint{MaxSkew: 1 + int32(r.IntN(2)), TopologyKey: topo[j], WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: selectors[r.IntN(len(selectors))]})
		}
		incoming := pod("in", "", cs...)

		full := scheduler.NewSnapshotFrom(existing, nodes)
		empty := scheduler.NewSnapshotFrom(nil, nodes)
		memoized, perPod := plugin(t, full), plugin(t, empty)
		sMemo, sPerPod := framework.NewCycleState(), framework.NewCycleState()
		if _, st := memoized.PreFilter(ctx, sMemo, incoming); !st.IsSuccess() {
			t.Fatalf("seed %d: PreFilter: %v", seed, st)
		}
		if _, st := perPod.PreFilter(ctx, sPerPod, incoming); !st.IsSuccess() {
			t.Fatalf("seed %d: PreFilter on no pods: %v", seed, st)
		}
		byName := map[string]*framework.NodeInfo{}
		for _, ni := range full.List() {
			byName[ni.Node().Name] = ni
		}
		for _, ex := range existing {
			perPod.AddPod(ctx, sPerPod, incoming, framework.NewPodInfo(ex), byName[ex.Spec.NodeName])
		}
		for _, ni := range full.List() {
			a, b := memoized.Filter(ctx, sMemo, incoming, ni), perPod.Filter(ctx, sPerPod, incoming, ni)
			if a.Code() != b.Code() || a.Message() != b.Message() {
				t.Fatalf("seed %d node %s: memoized PreFilter says %v %q, per-pod matching says %v %q", seed, ni.Node().Name, a.Code(), a.Message(), b.Code(), b.Message())
			}
			outcomes[a.Message()]++
		}
	}
	for _, m := range []string{"", podtopologyspread.ErrReasonConstraintsNotMatch} {
		if outcomes[m] == 0 {
			t.Errorf("no node got %q; outcomes: %v", m, outcomes)
		}
	}
}

// TestScoreCountsOnlyOwnNamespace: pods with the pod's labels in another
// namespace do not count, also when they come first and share a label set.
func TestScoreCountsOnlyOwnNamespace(t *testing.T) {
	nodes := []*corev1.Node{node("a", "z1"), node("b", "z1")}
	var existing []*corev1.Pod
	for i := range 3 {
		p := pod(fmt.Sprintf("o%d", i), "a")
		p.Namespace = "other"
		existing = append(existing, p)
	}
	existing = append(existing, pod("d1", "b"))
	soft := corev1.TopologySpreadConstraint{MaxSkew: 1, TopologyKey: corev1.LabelHostname, WhenUnsatisfiable: corev1.ScheduleAnyway,
		LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}
	scores := normalizedScores(t, existing, nodes, pod("new", "", soft))
	if scores[0].Name != "a" || scores[0].Score <= scores[1].Score {
		t.Fatalf("scores %+v: want a (no pod of this namespace) above b", scores)
	}
}
