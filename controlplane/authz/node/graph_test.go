package node

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func pod(name, node string, secrets ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Spec: corev1.PodSpec{NodeName: node}}
	for _, s := range secrets {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: s, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: s}}})
	}
	return p
}

// TestGraphLifecycle: unbound pods, binding, two pods sharing a secret,
// and removal keep the per-node references right.
func TestGraphLifecycle(t *testing.T) {
	g := NewGraph()
	g.SetPod(pod("p1", "", "s1"))
	if g.References("n1", kindSecret, "ns", "s1") {
		t.Fatal("unbound pod grants a node")
	}
	// Binding an unbound pod replaces its entry (the old one has no node).
	g.SetPod(pod("p1", "n1", "s1"))
	g.SetPod(pod("p2", "n1", "s1", "s2"))
	if !g.References("n1", kindSecret, "ns", "s1") || !g.References("n1", kindSecret, "ns", "s2") {
		t.Fatal("bound pods' secrets missing")
	}
	if !g.References("n1", kindServiceAccount, "ns", "default") {
		t.Fatal("default service account missing")
	}
	g.mu.Lock()
	g.setLocked("ns/p2", podInfo{}, false)
	g.mu.Unlock()
	if !g.References("n1", kindSecret, "ns", "s1") {
		t.Fatal("s1 still used by p1")
	}
	if g.References("n1", kindSecret, "ns", "s2") {
		t.Fatal("s2 kept after its only pod left")
	}
	if g.PodNode("ns", "p1") != "n1" || g.PodNode("ns", "p2") != "" {
		t.Fatal("pod nodes wrong")
	}
	g.mu.Lock()
	g.setLocked("ns/p1", podInfo{}, false)
	g.setLocked("ns/unknown", podInfo{}, false)
	g.mu.Unlock()
	if len(g.byNode) != 0 || len(g.pods) != 0 {
		t.Fatalf("graph not empty: %v %v", g.byNode, g.pods)
	}
}
