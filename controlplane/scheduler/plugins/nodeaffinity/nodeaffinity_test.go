package nodeaffinity

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ni(name string, labels map[string]string) *framework.NodeInfo {
	n := framework.NewNodeInfo()
	n.SetNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}})
	return n
}

func req(key string, op corev1.NodeSelectorOperator, vals ...string) *corev1.Affinity {
	return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: key, Operator: op, Values: vals}}}},
	}}}
}

func TestFilter(t *testing.T) {
	node := ni("n1", map[string]string{"disk": "ssd", "gen": "5"})
	tests := []struct {
		name string
		pod  corev1.PodSpec
		fits bool
	}{
		{"no constraints", corev1.PodSpec{}, true},
		{"nodeSelector match", corev1.PodSpec{NodeSelector: map[string]string{"disk": "ssd"}}, true},
		{"nodeSelector mismatch", corev1.PodSpec{NodeSelector: map[string]string{"disk": "hdd"}}, false},
		{"In", corev1.PodSpec{Affinity: req("disk", corev1.NodeSelectorOpIn, "ssd", "nvme")}, true},
		{"NotIn", corev1.PodSpec{Affinity: req("disk", corev1.NodeSelectorOpNotIn, "ssd")}, false},
		{"Exists", corev1.PodSpec{Affinity: req("gen", corev1.NodeSelectorOpExists)}, true},
		{"DoesNotExist", corev1.PodSpec{Affinity: req("gen", corev1.NodeSelectorOpDoesNotExist)}, false},
		{"Gt", corev1.PodSpec{Affinity: req("gen", corev1.NodeSelectorOpGt, "4")}, true},
		{"Lt", corev1.PodSpec{Affinity: req("gen", corev1.NodeSelectorOpLt, "4")}, false},
		{"both must hold", corev1.PodSpec{NodeSelector: map[string]string{"disk": "ssd"}, Affinity: req("gen", corev1.NodeSelectorOpIn, "4")}, false},
	}
	p, _ := New(nil, nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := p.(*NodeAffinity).Filter(context.Background(), nil, &corev1.Pod{Spec: tc.pod}, node)
			if st.IsSuccess() != tc.fits {
				t.Fatalf("fits=%v, want %v (%v)", st.IsSuccess(), tc.fits, st)
			}
			if !tc.fits && (st.Message() != ErrReasonPod || st.Code() != framework.UnschedulableAndUnresolvable) {
				t.Fatalf("status %v", st)
			}
		})
	}
}

func TestPreFilterNodeNames(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"n1", "n2"}}}}},
	}}}}}
	p, _ := New(nil, nil)
	res, st := p.(*NodeAffinity).PreFilter(context.Background(), nil, pod)
	if !st.IsSuccess() || res.AllNodes() || res.NodeNames.Len() != 2 || !res.NodeNames.Has("n2") {
		t.Fatalf("result %+v status %v", res, st)
	}
	if st := p.(*NodeAffinity).Filter(context.Background(), nil, pod, ni("n3", nil)); st.IsSuccess() {
		t.Fatal("matchFields ignored by Filter")
	}
}

func TestScoreAndAddedAffinity(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{
		{Weight: 10, Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "disk", Operator: corev1.NodeSelectorOpIn, Values: []string{"ssd"}}}}},
		{Weight: 30, Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}}}},
	}}}}}
	nodes := []*framework.NodeInfo{ni("n1", map[string]string{"disk": "ssd"}), ni("n2", map[string]string{"zone": "a"}), ni("n3", map[string]string{"disk": "ssd", "zone": "a"}), ni("n4", nil)}
	p, _ := New(nil, nil)
	pl := p.(*NodeAffinity)
	state := framework.NewCycleState()
	pl.PreScore(context.Background(), state, pod, nodes)
	var scores framework.NodeScoreList
	for _, n := range nodes {
		s, _ := pl.Score(context.Background(), state, pod, n)
		scores = append(scores, framework.NodeScore{Name: n.Node().Name, Score: s})
	}
	pl.NormalizeScore(context.Background(), state, pod, scores)
	want := []int64{25, 75, 100, 0}
	for i, s := range scores {
		if s.Score != want[i] {
			t.Errorf("%s = %d, want %d", s.Name, s.Score, want[i])
		}
	}
	added, err := New(json.RawMessage(`{"addedAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"zone","operator":"In","values":["a"]}]}]}}}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := added.(*NodeAffinity).Filter(context.Background(), nil, &corev1.Pod{}, nodes[0]); st.Message() != ErrReasonEnforced {
		t.Fatalf("addedAffinity: %v", st)
	}
}
