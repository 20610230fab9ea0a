package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testimages"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// sleepers makes and watches one-container busybox pods that sleep in
// the default namespace: the subjects of the agent crash tests.
type sleepers struct {
	t   *testing.T
	ctx context.Context
	cs  kubernetes.Interface
}

func (s sleepers) create(name string) *corev1.Pod {
	s.t.Helper()
	p, err := s.cs.CoreV1().Pods("default").Create(s.ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To[int64](0), AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{Name: "main", Image: testimages.Busybox, Command: []string{"sleep", "3600"}}}}}, metav1.CreateOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	return p
}

// running waits until the pod runs with its container Ready.
func (s sleepers) running(name string) *corev1.Pod {
	s.t.Helper()
	var p *corev1.Pod
	eventually(s.t, 120*time.Second, func() string {
		var err error
		if p, err = s.cs.CoreV1().Pods("default").Get(s.ctx, name, metav1.GetOptions{}); err != nil {
			return err.Error()
		}
		if p.Status.Phase != corev1.PodRunning || len(p.Status.ContainerStatuses) != 1 || !p.Status.ContainerStatuses[0].Ready {
			return fmt.Sprintf("%s: phase %s, %v", name, p.Status.Phase, p.Status.ContainerStatuses)
		}
		return ""
	})
	return p
}
