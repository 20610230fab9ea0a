package nodename

import (
	"context"
	"testing"

	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestFilter(t *testing.T) {
	ni := framework.NewNodeInfo()
	ni.SetNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "a"}})
	for _, tc := range []struct {
		nodeName string
		fits     bool
	}{{"", true}, {"a", true}, {"b", false}} {
		pod := &corev1.Pod{Spec: corev1.PodSpec{NodeName: tc.nodeName}}
		st := NodeName{}.Filter(context.Background(), nil, pod, ni)
		if st.IsSuccess() != tc.fits {
			t.Errorf("spec.nodeName %q on node a: fits = %v, want %v", tc.nodeName, st.IsSuccess(), tc.fits)
		}
		if !tc.fits && (st.Code() != framework.UnschedulableAndUnresolvable || st.Message() != ErrReason) {
			t.Errorf("spec.nodeName %q: status %v %q", tc.nodeName, st.Code(), st.Message())
		}
	}
}
