package interpodaffinity_test

import (
	"context"
	"testing"

	"github.com/skiffhq/skiff/controlplane/scheduler"
	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	"github.com/skiffhq/skiff/controlplane/scheduler/plugins/interpodaffinity"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func node(name, zone string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name, corev1.LabelTopologyZone: zone}}}
}

func pod(name, nodeName string, labels map[string]string, aff *corev1.Affinity) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID(name), Labels: labels}, Spec: corev1.PodSpec{NodeName: nodeName, Affinity: aff}}
}

func term(key string, sel map[string]string) corev1.PodAffinityTerm {
	return corev1.PodAffinityTerm{LabelSelector: &metav1.LabelSelector{MatchLabels: sel}, TopologyKey: key}
}

func antiAff(t ...corev1.PodAffinityTerm) *corev1.Affinity {
	return &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: t}}
}

func aff(t ...corev1.PodAffinityTerm) *corev1.Affinity {
	return &corev1.Affinity{PodAffinity: &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: t}}
}

// plugin is the InterPodAffinity of a framework over snap.
func plugin(t *testing.T, snap *scheduler.Snapshot) *interpodaffinity.InterPodAffinity {
	t.Helper()
	fwk, err := scheduler.NewFrameworkForSnapshot(snap, nil)
	if err != nil {
		t.Fatal(err)
	}
	pl, _ := fwk.Plugin(interpodaffinity.Name)
	return pl.(*interpodaffinity.InterPodAffinity)
}

func TestFilter(t *testing.T) {
	nodes := []*corev1.Node{node("a", "z1"), node("b", "z1"), node("c", "z2")}
	web := map[string]string{"app": "web"}
	db := map[string]string{"app": "db"}
	tests := []struct {
		name     string
		existing []*corev1.Pod
		pod      *corev1.Pod
		want     map[string]string // node -> reason ("" = fits)
	}{
		{
			name:     "anti-affinity by hostname avoids the node with a match",
			existing: []*corev1.Pod{pod("w1", "a", web, nil)},
			pod:      pod("w2", "", web, antiAff(term(corev1.LabelHostname, web))),
			want:     map[string]string{"a": interpodaffinity.ErrReasonAntiAffinityRulesNotMatch, "b": "", "c": ""},
		},
		{
			name:     "anti-affinity by zone avoids the whole zone",
			existing: []*corev1.Pod{pod("w1", "a", web, nil)},
			pod:      pod("w2", "", web, antiAff(term(corev1.LabelTopologyZone, web))),
			want:     map[string]string{"a": interpodaffinity.ErrReasonAntiAffinityRulesNotMatch, "b": interpodaffinity.ErrReasonAntiAffinityRulesNotMatch, "c": ""},
		},
		{
			name:     "existing pod's anti-affinity is symmetric",
			existing: []*corev1.Pod{pod("d1", "c", db, antiAff(term(corev1.LabelTopologyZone, web)))},
			pod:      pod("w1", "", web, nil),
			want:     map[string]string{"a": "", "b": "", "c": interpodaffinity.ErrReasonExistingAntiAffinityRulesNotMatch},
		},
		{
			name:     "affinity follows matching pods' zone",
			existing: []*corev1.Pod{pod("d1", "c", db, nil)},
			pod:      pod("w1", "", web, aff(term(corev1.LabelTopologyZone, db))),
			want:     map[string]string{"a": interpodaffinity.ErrReasonAffinityRulesNotMatch, "b": interpodaffinity.ErrReasonAffinityRulesNotMatch, "c": ""},
		},
		{
			name: "first pod of a self-affine group may go anywhere",
			pod:  pod("w1", "", web, aff(term(corev1.LabelTopologyZone, web))),
			want: map[string]string{"a": "", "b": "", "c": ""},
		},
		{
			name: "affinity to absent pods that the pod itself doesn't match fails everywhere",
			pod:  pod("w1", "", web, aff(term(corev1.LabelTopologyZone, db))),
			want: map[string]string{"a": interpodaffinity.ErrReasonAffinityRulesNotMatch, "b": interpodaffinity.ErrReasonAffinityRulesNotMatch, "c": interpodaffinity.ErrReasonAffinityRulesNotMatch},
		},
		{
			name:     "other namespaces do not count",
			existing: []*corev1.Pod{func() *corev1.Pod { p := pod("w1", "a", web, nil); p.Namespace = "other"; return p }()},
			pod:      pod("w2", "", web, antiAff(term(corev1.LabelHostname, web))),
			want:     map[string]string{"a": "", "b": "", "c": ""},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snap := scheduler.NewSnapshotFrom(tc.existing, nodes)
			pl := plugin(t, snap)
			state := framework.NewCycleState()
			ctx := context.Background()
			if _, st := pl.PreFilter(ctx, state, tc.pod); !st.IsSuccess() && !st.IsSkip() {
				t.Fatalf("PreFilter: %v", st)
			}
			for _, ni := range snap.List() {
				var got string
				if st := pl.Filter(ctx, state, tc.pod, ni); !st.IsSuccess() {
					got = st.Message()
				}
				if want := tc.want[ni.Node().Name]; got != want {
					t.Errorf("node %s: got %q, want %q", ni.Node().Name, got, want)
				}
			}
		})
	}
}

func TestPreferredScore(t *testing.T) {
	nodes := []*corev1.Node{node("a", "z1"), node("b", "z2")}
	web := map[string]string{"app": "web"}
	existing := []*corev1.Pod{pod("w1", "a", web, nil)}
	p := pod("w2", "", web, &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{Weight: 10, PodAffinityTerm: term(corev1.LabelHostname, web)}}}})
	snap := scheduler.NewSnapshotFrom(existing, nodes)
	ipa := plugin(t, snap)
	state := framework.NewCycleState()
	ctx := context.Background()
	if st := ipa.PreScore(ctx, state, p, snap.List()); !st.IsSuccess() {
		t.Fatal(st)
	}
	var scores framework.NodeScoreList
	for _, ni := range snap.List() {
		s, st := ipa.Score(ctx, state, p, ni)
		if !st.IsSuccess() {
			t.Fatal(st)
		}
		scores = append(scores, framework.NodeScore{Name: ni.Node().Name, Score: s})
	}
	ipa.NormalizeScore(ctx, state, p, scores)
	if scores[0].Score != 0 || scores[1].Score != framework.MaxNodeScore {
		t.Fatalf("scores = %+v, want a=0 b=100", scores)
	}
}
