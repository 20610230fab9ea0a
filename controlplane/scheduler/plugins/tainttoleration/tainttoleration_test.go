package tainttoleration

import (
	"context"
	"testing"

	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ni(taints ...corev1.Taint) *framework.NodeInfo {
	n := framework.NewNodeInfo()
	n.SetNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n"}, Spec: corev1.NodeSpec{Taints: taints}})
	return n
}

func TestFilter(t *testing.T) {
	noSched := corev1.Taint{Key: "k", Value: "v", Effect: corev1.TaintEffectNoSchedule}
	prefer := corev1.Taint{Key: "soft", Value: "x", Effect: corev1.TaintEffectPreferNoSchedule}
	tests := []struct {
		name   string
		taints []corev1.Taint
		tols   []corev1.Toleration
		want   string
	}{
		{"no taints", nil, nil, ""},
		{"untolerated", []corev1.Taint{noSched}, nil, "node(s) had untolerated taint {k: v}"},
		{"tolerated equal", []corev1.Taint{noSched}, []corev1.Toleration{{Key: "k", Value: "v", Operator: corev1.TolerationOpEqual}}, ""},
		{"wrong value", []corev1.Taint{noSched}, []corev1.Toleration{{Key: "k", Value: "w"}}, "node(s) had untolerated taint {k: v}"},
		{"exists any key", []corev1.Taint{noSched}, []corev1.Toleration{{Operator: corev1.TolerationOpExists}}, ""},
		{"wrong effect", []corev1.Taint{noSched}, []corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}}, "node(s) had untolerated taint {k: v}"},
		{"PreferNoSchedule does not filter", []corev1.Taint{prefer}, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{Spec: corev1.PodSpec{Tolerations: tc.tols}}
			st := TaintToleration{}.Filter(context.Background(), nil, pod, ni(tc.taints...))
			if st.Message() != tc.want {
				t.Fatalf("got %q, want %q", st.Message(), tc.want)
			}
			if tc.want != "" && st.Code() != framework.UnschedulableAndUnresolvable {
				t.Fatalf("code %v", st.Code())
			}
		})
	}
}

func TestScore(t *testing.T) {
	prefer := func(k string) corev1.Taint {
		return corev1.Taint{Key: k, Effect: corev1.TaintEffectPreferNoSchedule}
	}
	nodes := []*framework.NodeInfo{ni(), ni(prefer("a")), ni(prefer("a"), prefer("b"))}
	pod := &corev1.Pod{Spec: corev1.PodSpec{Tolerations: []corev1.Toleration{{Key: "b", Operator: corev1.TolerationOpExists}}}}
	state := framework.NewCycleState()
	p := TaintToleration{}
	p.PreScore(context.Background(), state, pod, nodes)
	var scores framework.NodeScoreList
	for _, n := range nodes {
		s, _ := p.Score(context.Background(), state, pod, n)
		scores = append(scores, framework.NodeScore{Score: s})
	}
	p.NormalizeScore(context.Background(), state, pod, scores)
	// Untolerated counts 0, 1, 1 → reversed and normalized 100, 0, 0.
	if scores[0].Score != 100 || scores[1].Score != 0 || scores[2].Score != 0 {
		t.Fatalf("scores %+v", scores)
	}
}
