package podtopologyspread_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/skiffhq/skiff/controlplane/scheduler"
	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	"github.com/skiffhq/skiff/controlplane/scheduler/plugins/podtopologyspread"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func node(name, zone string) *corev1.Node {
	l := map[string]string{corev1.LabelHostname: name}
	if zone != "" {
		l[corev1.LabelTopologyZone] = zone
	}
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
}

func pod(name, nodeName string, c ...corev1.TopologySpreadConstraint) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID(name), Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{NodeName: nodeName, TopologySpreadConstraints: c}}
}

func zoneSpread(skew int32, min *int32) corev1.TopologySpreadConstraint {
	return corev1.TopologySpreadConstraint{MaxSkew: skew, TopologyKey: corev1.LabelTopologyZone, WhenUnsatisfiable: corev1.DoNotSchedule,
		LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, MinDomains: min}
}

// plugin is the PodTopologySpread of a framework over snap.
func plugin(t *testing.T, snap *scheduler.Snapshot) *podtopologyspread.PodTopologySpread {
	t.Helper()
	fwk, err := scheduler.NewFrameworkForSnapshot(snap, nil)
	if err != nil {
		t.Fatal(err)
	}
	pl, _ := fwk.Plugin(podtopologyspread.Name)
	return pl.(*podtopologyspread.PodTopologySpread)
}

// normalizedScores runs PreScore, Score on every node and NormalizeScore
// for incoming over existing pods on nodes.
func normalizedScores(t *testing.T, existing []*corev1.Pod, nodes []*corev1.Node, incoming *corev1.Pod) framework.NodeScoreList {
	t.Helper()
	snap := scheduler.NewSnapshotFrom(existing, nodes)
	p := plugin(t, snap)
	state := framework.NewCycleState()
	if st := p.PreScore(context.Background(), state, incoming, snap.List()); !st.IsSuccess() {
		t.Fatal(st)
	}
	var scores framework.NodeScoreList
	for _, ni := range snap.List() {
		s, _ := p.Score(context.Background(), state, incoming, ni)
		scores = append(scores, framework.NodeScore{Name: ni.Node().Name, Score: s})
	}
	p.NormalizeScore(context.Background(), state, incoming, scores)
	return scores
}

func TestFilter(t *testing.T) {
	nodes := []*corev1.Node{node("a", "z1"), node("b", "z1"), node("c", "z2"), node("d", "")}
	three := int32(3)
	tests := []struct {
		name     string
		existing []string // node of each existing app=web pod
		c        corev1.TopologySpreadConstraint
		want     map[string]string
	}{
		{
			name: "empty cluster: every labelled node fits",
			c:    zoneSpread(1, nil),
			want: map[string]string{"a": "", "b": "", "c": "", "d": podtopologyspread.ErrReasonNodeLabelNotMatch},
		},
		{
			name:     "z1 ahead by one: only z2 fits with maxSkew 1",
			existing: []string{"a"},
			c:        zoneSpread(1, nil),
			want:     map[string]string{"a": podtopologyspread.ErrReasonConstraintsNotMatch, "b": podtopologyspread.ErrReasonConstraintsNotMatch, "c": "", "d": podtopologyspread.ErrReasonNodeLabelNotMatch},
		},
		{
			name:     "maxSkew 2 tolerates it",
			existing: []string{"a"},
			c:        zoneSpread(2, nil),
			want:     map[string]string{"a": "", "b": "", "c": "", "d": podtopologyspread.ErrReasonNodeLabelNotMatch},
		},
		{
			name:     "minDomains above the domain count treats the minimum as zero",
			existing: []string{"c"},
			c:        zoneSpread(1, &three),
			want:     map[string]string{"a": "", "b": "", "c": podtopologyspread.ErrReasonConstraintsNotMatch, "d": podtopologyspread.ErrReasonNodeLabelNotMatch},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var existing []*corev1.Pod
			for i, n := range tc.existing {
				existing = append(existing, pod(fmt.Sprintf("e%d", i), n))
			}
			snap := scheduler.NewSnapshotFrom(existing, nodes)
			p := plugin(t, snap)
			incoming := pod("new", "", tc.c)
			state := framework.NewCycleState()
			if _, st := p.PreFilter(context.Background(), state, incoming); !st.IsSuccess() {
				t.Fatal(st)
			}
			for _, ni := range snap.List() {
				got := p.Filter(context.Background(), state, incoming, ni).Message()
				if want := tc.want[ni.Node().Name]; got != want {
					t.Errorf("node %s: %q, want %q", ni.Node().Name, got, want)
				}
			}
		})
	}
}

func TestScoreSpreadsByHostname(t *testing.T) {
	nodes := []*corev1.Node{node("a", "z1"), node("b", "z1"), node("c", "z2")}
	existing := []*corev1.Pod{pod("e1", "a"), pod("e2", "a"), pod("e3", "b")}
	soft := corev1.TopologySpreadConstraint{MaxSkew: 1, TopologyKey: corev1.LabelHostname, WhenUnsatisfiable: corev1.ScheduleAnyway,
		LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}
	scores := normalizedScores(t, existing, nodes, pod("new", "", soft))
	if !(scores[2].Score > scores[1].Score && scores[1].Score > scores[0].Score) || scores[2].Score != framework.MaxNodeScore {
		t.Fatalf("scores %+v: want c > b > a with c = 100", scores)
	}
}

func TestSystemDefaultingNeedsASelector(t *testing.T) {
	snap := scheduler.NewSnapshotFrom(nil, []*corev1.Node{node("a", "z1")})
	p := plugin(t, snap)
	// No constraints and no workload selecting the pod: nothing to do.
	if _, st := p.PreFilter(context.Background(), framework.NewCycleState(), pod("x", "")); !st.IsSkip() {
		t.Fatalf("PreFilter = %v, want Skip", st)
	}
	if st := p.PreScore(context.Background(), framework.NewCycleState(), pod("x", ""), snap.List()); !st.IsSkip() {
		t.Fatalf("PreScore = %v, want Skip", st)
	}
}
