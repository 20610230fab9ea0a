package nodeports

import (
	"context"
	"testing"

	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func portPod(name, ip string, proto corev1.Protocol, port int32) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(name)}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{HostIP: ip, Protocol: proto, HostPort: port, ContainerPort: 80}}}}}}
}

func TestFilter(t *testing.T) {
	tests := []struct {
		name     string
		existing *corev1.Pod
		pod      *corev1.Pod
		fits     bool
	}{
		{"free", portPod("e", "", "TCP", 8080), portPod("p", "", "TCP", 8081), true},
		{"same port", portPod("e", "", "TCP", 8080), portPod("p", "", "TCP", 8080), false},
		{"other protocol", portPod("e", "", "TCP", 8080), portPod("p", "", "UDP", 8080), true},
		{"different IPs", portPod("e", "10.0.0.1", "TCP", 8080), portPod("p", "10.0.0.2", "TCP", 8080), true},
		{"wildcard conflicts with specific", portPod("e", "10.0.0.1", "TCP", 8080), portPod("p", "0.0.0.0", "TCP", 8080), false},
		{"specific conflicts with wildcard", portPod("e", "", "TCP", 8080), portPod("p", "10.0.0.2", "TCP", 8080), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ni := framework.NewNodeInfo(tc.existing)
			ni.SetNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n"}})
			state := framework.NewCycleState()
			if _, st := (NodePorts{}).PreFilter(context.Background(), state, tc.pod); !st.IsSuccess() {
				t.Fatal(st)
			}
			st := NodePorts{}.Filter(context.Background(), state, tc.pod, ni)
			if st.IsSuccess() != tc.fits {
				t.Fatalf("fits=%v want %v", st.IsSuccess(), tc.fits)
			}
			if !tc.fits && st.Message() != ErrReason {
				t.Fatalf("reason %q", st.Message())
			}
			// Removing the existing pod frees the port.
			ni.RemovePod(tc.existing)
			if st := (NodePorts{}).Filter(context.Background(), state, tc.pod, ni); !st.IsSuccess() {
				t.Fatalf("after removal: %v", st)
			}
		})
	}
	if _, st := (NodePorts{}).PreFilter(context.Background(), framework.NewCycleState(), &corev1.Pod{}); !st.IsSkip() {
		t.Fatalf("pod without host ports: %v, want Skip", st)
	}
}
