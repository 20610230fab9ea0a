package interpodaffinity_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/skiffhq/skiff/controlplane/scheduler"
	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	"github.com/skiffhq/skiff/controlplane/scheduler/plugins/interpodaffinity"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestPreFilterMemoAgreesWithPerPodMatching checks PreFilter, which
// matches each distinct term and label set once per cycle, against the
// same state built pod by pod through AddPod, which matches every pod
// itself. The pods are drawn from few label sets, namespaces and terms
// (so answers are reused), with selectors that print alike (nil and empty)
// and label sets that differ only in namespace.
func TestPreFilterMemoAgreesWithPerPodMatching(t *testing.T) {
	labelSets := []map[string]string{
		{"app": "web"}, {"app": "db"}, {"app": "web", "tier": "front"},
		{"tier": "front"}, {}, {"app": "webtier"}, {"ap": "pweb"},
	}
	namespaces := []string{"default", "other"}
	sel := func(l map[string]string) *metav1.LabelSelector { return &metav1.LabelSelector{MatchLabels: l} }
	selectors := []*metav1.LabelSelector{
		nil, {}, sel(map[string]string{"app": "web"}), sel(map[string]string{"tier": "front"}),
		{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpExists}}},
		{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"web", "db"}}}},
	}
	topo := []string{corev1.LabelHostname, corev1.LabelTopologyZone}
	randTerm := func(r *rand.Rand) corev1.PodAffinityTerm {
		tm := corev1.PodAffinityTerm{LabelSelector: selectors[r.IntN(len(selectors))], TopologyKey: topo[r.IntN(len(topo))]}
		switch r.IntN(4) {
		case 0:
			tm.Namespaces = []string{namespaces[r.IntN(len(namespaces))]}
		case 1:
			tm.NamespaceSelector = &metav1.LabelSelector{}
		}
		return tm
	}
	randTerms := func(r *rand.Rand, max int) []corev1.PodAffinityTerm {
		var ts []corev1.PodAffinityTerm
		for range r.IntN(max + 1) {
			ts = append(ts, randTerm(r))
		}
		return ts
	}
	ctx := context.Background()
	outcomes := map[string]int{}
	for seed := range 150 {
		r := rand.New(rand.NewPCG(uint64(seed), 7))
		var nodes []*corev1.Node
		for i := range 12 {
			nodes = append(nodes, node(fmt.Sprintf("n%d", i), fmt.Sprintf("z%d", i%3)))
		}
		var existing []*corev1.Pod
		for i := range 80 {
			var a *corev1.Affinity
			if r.IntN(3) == 0 {
				a = antiAff(randTerms(r, 2)...)
			}
			p := pod(fmt.Sprintf("e%d", i), nodes[r.IntN(len(nodes))].Name, labelSets[r.IntN(len(labelSets))], a)
			p.Namespace = namespaces[r.IntN(len(namespaces))]
			existing = append(existing, p)
		}
		incoming := pod("in", "", labelSets[r.IntN(len(labelSets))], &corev1.Affinity{
			PodAffinity:     &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: randTerms(r, 1)},
			PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: append([]corev1.PodAffinityTerm{randTerm(r)}, randTerms(r, 1)...)},
		})
		incoming.UID = types.UID("in")

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
			if st := perPod.AddPod(ctx, sPerPod, incoming, framework.NewPodInfo(ex), byName[ex.Spec.NodeName]); !st.IsSuccess() {
				t.Fatalf("seed %d: AddPod: %v", seed, st)
			}
		}
		for _, ni := range full.List() {
			a, b := memoized.Filter(ctx, sMemo, incoming, ni), perPod.Filter(ctx, sPerPod, incoming, ni)
			if a.Code() != b.Code() || a.Message() != b.Message() {
				t.Fatalf("seed %d node %s: memoized PreFilter says %v %q, per-pod matching says %v %q", seed, ni.Node().Name, a.Code(), a.Message(), b.Code(), b.Message())
			}
			outcomes[a.Message()]++
		}
	}
	// Every outcome must occur, or the comparison proved little.
	for _, m := range []string{"", interpodaffinity.ErrReasonExistingAntiAffinityRulesNotMatch, interpodaffinity.ErrReasonAffinityRulesNotMatch, interpodaffinity.ErrReasonAntiAffinityRulesNotMatch} {
		if outcomes[m] == 0 {
			t.Errorf("no node got %q; outcomes: %v", m, outcomes)
		}
	}
}
