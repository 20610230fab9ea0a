package framework

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestLabelsKey(t *testing.T) {
	a := LabelsKey("ns", map[string]string{"app": "web", "tier": "front"})
	b := LabelsKey("ns", map[string]string{"tier": "front", "app": "web"})
	if a != b {
		t.Fatal("equal label sets got different keys")
	}
	differ := [][2]MatchKey{
		{LabelsKey("ns", map[string]string{"ab": "c"}), LabelsKey("ns", map[string]string{"a": "bc"})},
		{LabelsKey("ns", map[string]string{"a": "b"}), LabelsKey("other", map[string]string{"a": "b"})},
		{LabelsKey("n", map[string]string{"sa": "b"}), LabelsKey("ns", map[string]string{"a": "b"})},
		{LabelsKey("ns", nil), LabelsKey("ns", map[string]string{"": ""})},
	}
	for i, d := range differ {
		if d[0] == d[1] {
			t.Errorf("case %d: different inputs share a key", i)
		}
	}
}

func TestTermKey(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Labels: map[string]string{"v": "1"}}}
	key := func(term corev1.PodAffinityTerm) MatchKey {
		t.Helper()
		at, err := NewAffinityTerm(pod, &term)
		if err != nil {
			t.Fatal(err)
		}
		return at.Key
	}
	web := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	if key(corev1.PodAffinityTerm{LabelSelector: web, TopologyKey: "a"}) != key(corev1.PodAffinityTerm{LabelSelector: web, TopologyKey: "b"}) {
		t.Error("the topology key does not decide a match, yet changed the key")
	}
	distinct := []corev1.PodAffinityTerm{
		{LabelSelector: nil},                     // matches nothing
		{LabelSelector: &metav1.LabelSelector{}}, // matches everything
		{LabelSelector: web},
		{LabelSelector: web, Namespaces: []string{"other"}},
		{LabelSelector: web, NamespaceSelector: &metav1.LabelSelector{}},
		{LabelSelector: web, MatchLabelKeys: []string{"v"}},
		{LabelSelector: web, MismatchLabelKeys: []string{"v"}},
	}
	seen := map[MatchKey]int{}
	for i, d := range distinct {
		k := key(d)
		if j, ok := seen[k]; ok {
			t.Errorf("terms %d and %d select differently but share a key", j, i)
		}
		seen[k] = i
	}
}
