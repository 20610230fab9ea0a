package imagelocality

import (
	"testing"

	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
)

func TestScore(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Image: "app"}}}}
	ni := func(size int64, numNodes int) *framework.NodeInfo {
		n := framework.NewNodeInfo()
		n.ImageStates = map[string]*framework.ImageStateSummary{"app:latest": {Size: size, NumNodes: numNodes}}
		return n
	}
	tests := []struct {
		name  string
		ni    *framework.NodeInfo
		total int
		want  int64
	}{
		{"absent", framework.NewNodeInfo(), 10, 0},
		{"small image scores 0", ni(10*mb, 10), 10, 0},
		{"huge image on every node scores 100", ni(2000*mb, 10), 10, 100},
		{"spread matters", ni(500*mb, 5), 10, 100 * (250*mb - minThreshold) / (maxContainerThreshold - minThreshold)},
	}
	for _, tc := range tests {
		if got := Score(pod, tc.ni, tc.total); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	if framework.NormalizedImageName("nginx") != "nginx:latest" || framework.NormalizedImageName("r.io:5000/nginx") != "r.io:5000/nginx:latest" || framework.NormalizedImageName("nginx@sha256:ab") != "nginx@sha256:ab" {
		t.Error("image name normalization")
	}
}
