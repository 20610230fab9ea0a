package podtopologyspread

import (
	"math/rand/v2"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// TestMayMatchNeverDropsAMatch compares the pre-check of defaultSelector
// with the parsed selectors over random selectors and label sets: whenever
// LabelSelectorAsSelector's selector matches, mayMatch must let it through,
// and subsetOf must answer as SelectorFromSet.
func TestMayMatchNeverDropsAMatch(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	keys, values := []string{"app", "tier", "team"}, []string{"a", "b", ""}
	ops := []metav1.LabelSelectorOperator{metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn, metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist}
	randSet := func() map[string]string {
		m := map[string]string{}
		for _, k := range keys {
			if r.IntN(2) == 0 {
				m[k] = values[r.IntN(len(values))]
			}
		}
		return m
	}
	matched, dropped := 0, 0
	for range 20000 {
		ls := &metav1.LabelSelector{MatchLabels: randSet()}
		for range r.IntN(3) {
			e := metav1.LabelSelectorRequirement{Key: keys[r.IntN(len(keys))], Operator: ops[r.IntN(len(ops))]}
			if e.Operator == metav1.LabelSelectorOpIn || e.Operator == metav1.LabelSelectorOpNotIn {
				for range 1 + r.IntN(2) {
					e.Values = append(e.Values, values[r.IntN(len(values))])
				}
			}
			ls.MatchExpressions = append(ls.MatchExpressions, e)
		}
		l := labels.Set(randSet())
		if got, want := subsetOf(ls.MatchLabels, l), labels.SelectorFromSet(ls.MatchLabels).Matches(l); got != want {
			t.Fatalf("subsetOf(%v, %v) = %v, SelectorFromSet says %v", ls.MatchLabels, l, got, want)
		}
		s, err := metav1.LabelSelectorAsSelector(ls)
		if err != nil {
			continue
		}
		if s.Matches(l) {
			matched++
			if !mayMatch(ls, l) {
				t.Fatalf("mayMatch(%+v, %v) = false, but the selector matches", ls, l)
			}
		} else if !mayMatch(ls, l) {
			dropped++
		}
	}
	if matched == 0 || dropped == 0 {
		t.Fatalf("random cases too narrow: %d matched, %d skipped by mayMatch", matched, dropped)
	}
	if mayMatch(nil, labels.Set{"app": "a"}) {
		t.Error("a nil selector selects nothing")
	}
}
