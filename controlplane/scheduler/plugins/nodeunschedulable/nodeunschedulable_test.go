package nodeunschedulable

import (
	"context"
	"testing"

	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
)

func TestFilter(t *testing.T) {
	tolerateAll := []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
	tolerateCordon := []corev1.Toleration{{Key: corev1.TaintNodeUnschedulable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
	tolerateOther := []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpExists}}
	for _, tc := range []struct {
		name        string
		cordoned    bool
		tolerations []corev1.Toleration
		fits        bool
	}{
		{"schedulable node", false, nil, true},
		{"cordoned node", true, nil, false},
		{"cordoned, tolerating everything", true, tolerateAll, true},
		{"cordoned, tolerating the unschedulable taint", true, tolerateCordon, true},
		{"cordoned, tolerating another taint", true, tolerateOther, false},
	} {
		ni := framework.NewNodeInfo()
		ni.SetNode(&corev1.Node{Spec: corev1.NodeSpec{Unschedulable: tc.cordoned}})
		pod := &corev1.Pod{Spec: corev1.PodSpec{Tolerations: tc.tolerations}}
		st := NodeUnschedulable{}.Filter(context.Background(), nil, pod, ni)
		if st.IsSuccess() != tc.fits {
			t.Errorf("%s: fits = %v, want %v", tc.name, st.IsSuccess(), tc.fits)
		}
		if !tc.fits && st.Message() != ErrReason {
			t.Errorf("%s: message %q", tc.name, st.Message())
		}
	}
}
