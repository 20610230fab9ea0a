package framework

import (
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DefaultNormalizeScore scales scores to [0, maxPriority] relative to the
// highest score; with reverse, higher raw scores become lower ones.
func DefaultNormalizeScore(maxPriority int64, reverse bool, scores NodeScoreList) *Status {
	var highest int64
	for _, s := range scores {
		highest = max(highest, s.Score)
	}
	if highest == 0 {
		if reverse {
			for i := range scores {
				scores[i].Score = maxPriority
			}
		}
		return nil
	}
	for i := range scores {
		s := scores[i].Score * maxPriority / highest
		if reverse {
			s = maxPriority - s
		}
		scores[i].Score = s
	}
	return nil
}

// NodeSelectorTermMatches reports whether node satisfies every
// requirement of a node selector term (matchExpressions on labels,
// matchFields on metadata.name).
func NodeSelectorTermMatches(term *corev1.NodeSelectorTerm, node *corev1.Node) bool {
	if len(term.MatchExpressions) == 0 && len(term.MatchFields) == 0 {
		return false
	}
	for _, r := range term.MatchExpressions {
		if !requirementMatches(r, node.Labels) {
			return false
		}
	}
	for _, r := range term.MatchFields {
		if r.Key != metav1.ObjectNameField {
			return false
		}
		if !requirementMatches(r, map[string]string{metav1.ObjectNameField: node.Name}) {
			return false
		}
	}
	return true
}

// NodeSelectorMatches reports whether node satisfies any term (terms are ORed).
func NodeSelectorMatches(sel *corev1.NodeSelector, node *corev1.Node) bool {
	if sel == nil {
		return true
	}
	for i := range sel.NodeSelectorTerms {
		if NodeSelectorTermMatches(&sel.NodeSelectorTerms[i], node) {
			return true
		}
	}
	return false
}

func requirementMatches(r corev1.NodeSelectorRequirement, lbls map[string]string) bool {
	v, has := lbls[r.Key]
	switch r.Operator {
	case corev1.NodeSelectorOpIn:
		return has && slices.Contains(r.Values, v)
	case corev1.NodeSelectorOpNotIn:
		return !has || !slices.Contains(r.Values, v)
	case corev1.NodeSelectorOpExists:
		return has
	case corev1.NodeSelectorOpDoesNotExist:
		return !has
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
		if !has || len(r.Values) != 1 {
			return false
		}
		a, err1 := strconv.ParseInt(v, 10, 64)
		b, err2 := strconv.ParseInt(r.Values[0], 10, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		if r.Operator == corev1.NodeSelectorOpGt {
			return a > b
		}
		return a < b
	}
	return false
}

// PodMatchesNodeSelectorAndAffinity reports whether node satisfies the
// pod's spec.nodeSelector and required node affinity.
func PodMatchesNodeSelectorAndAffinity(pod *corev1.Pod, node *corev1.Node) bool {
	for k, v := range pod.Spec.NodeSelector {
		if lv, ok := node.Labels[k]; !ok || lv != v {
			return false
		}
	}
	if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		return NodeSelectorMatches(a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution, node)
	}
	return true
}

// FindUntoleratedTaint returns the first taint with an effect in effects
// that tolerations do not tolerate.
func FindUntoleratedTaint(taints []corev1.Taint, tolerations []corev1.Toleration, effects ...corev1.TaintEffect) (corev1.Taint, bool) {
	for i := range taints {
		t := &taints[i]
		if len(effects) > 0 && !slices.Contains(effects, t.Effect) {
			continue
		}
		tolerated := false
		for j := range tolerations {
			if Tolerates(&tolerations[j], t) {
				tolerated = true
				break
			}
		}
		if !tolerated {
			return *t, true
		}
	}
	return corev1.Taint{}, false
}

// Tolerates reports whether toleration tolerates taint: matching effect
// (empty matches all), key (empty with Exists matches all) and value
// (Equal), or any value (Exists).
func Tolerates(t *corev1.Toleration, taint *corev1.Taint) bool {
	if t.Effect != "" && t.Effect != taint.Effect {
		return false
	}
	if t.Key != "" && t.Key != taint.Key {
		return false
	}
	switch t.Operator {
	case "", corev1.TolerationOpEqual:
		return t.Value == taint.Value
	case corev1.TolerationOpExists:
		return true
	}
	return false
}
