// Package playnode lets integration tests act as the kubelet: it moves pods
// to Running and flips their Ready condition through pods/status, the same
// write a node agent makes.
package playnode

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// SetReady marks pod Running with Ready=ready (and a pod IP) as a kubelet would.
func SetReady(ctx context.Context, c kubernetes.Interface, ns, name string, ready bool) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		status := corev1.ConditionFalse
		if ready {
			status = corev1.ConditionTrue
		}
		now := metav1.NewTime(time.Now())
		p.Status.Phase = corev1.PodRunning
		if p.Status.PodIP == "" {
			ip := podIP(p.Name)
			p.Status.PodIP = ip
			p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
		}
		if p.Status.StartTime == nil {
			p.Status.StartTime = &now
		}
		found := false
		for i, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady {
				found = true
				if c.Status != status {
					p.Status.Conditions[i].Status = status
					p.Status.Conditions[i].LastTransitionTime = now
				}
			}
		}
		if !found {
			p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.PodReady, Status: status, LastTransitionTime: now})
		}
		_, err = c.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		return err
	})
}

// podIP derives a stable loopback-range address from the pod's name; tests
// never send traffic to it.
func podIP(name string) string {
	var h uint32 = 2166136261
	for i := 0; i < len(name); i++ {
		h = (h ^ uint32(name[i])) * 16777619
	}
	return fmt.Sprintf("127.%d.%d.%d", 1+(h>>16)%250, (h>>8)&0xff, 1+h%250)
}
