package admission_test

import (
	"context"
	"testing"

	"github.com/skiffhq/skiff/controlplane/admission/defaulttolerationseconds"
	"github.com/skiffhq/skiff/internal/testserver"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestDefaultTolerationsAdded(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []corev1.Toleration
		want int // tolerations after admission
	}{
		{"none", nil, 2},
		{"not-ready only", []corev1.Toleration{{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}}, 2},
		{"wildcard key", []corev1.Toleration{{Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}}, 1},
		{"wildcard effect", []corev1.Toleration{{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists}}, 2},
		{"NoSchedule does not count", []corev1.Toleration{{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := corev1.PodSpec{Tolerations: append([]corev1.Toleration(nil), tc.in...)}
			defaulttolerationseconds.AddDefaults(&spec, 300, 300)
			if len(spec.Tolerations) != tc.want {
				t.Fatalf("tolerations = %+v, want %d", spec.Tolerations, tc.want)
			}
		})
	}
}

func testDefaultTolerationSeconds(t *testing.T, s *testserver.Server) {
	ctx := context.Background()
	c := s.Client
	namespace(t, c, "dts", nil)
	got, err := c.CoreV1().Pods("dts").Create(ctx, pod("plain"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int64{}
	for _, tl := range got.Spec.Tolerations {
		if tl.Effect == corev1.TaintEffectNoExecute && tl.Operator == corev1.TolerationOpExists && tl.TolerationSeconds != nil {
			seen[tl.Key] = *tl.TolerationSeconds
		}
	}
	if seen[corev1.TaintNodeNotReady] != 300 || seen[corev1.TaintNodeUnreachable] != 300 || len(got.Spec.Tolerations) != 2 {
		t.Fatalf("tolerations = %+v", got.Spec.Tolerations)
	}
	// A pod's own unreachable toleration is kept; only not-ready is added.
	got, err = c.CoreV1().Pods("dts").Create(ctx, pod("own", func(p *corev1.Pod) {
		p.Spec.Tolerations = []corev1.Toleration{{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists,
			Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To(int64(7))}}
	}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Spec.Tolerations) != 2 || *got.Spec.Tolerations[0].TolerationSeconds != 7 || got.Spec.Tolerations[1].Key != corev1.TaintNodeNotReady {
		t.Fatalf("tolerations = %+v", got.Spec.Tolerations)
	}
}
