package framework

import (
	"slices"
	"strconv"
	"sync"
	"unique"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/sets"
)

// A MatchKey is an interned description of what a selector looks at (a
// pod's namespace and labels) or of what it asks (an affinity term's
// namespaces and selectors). Equal keys mean equal inputs, so a plugin may
// remember a selector's answer per key for the length of one scheduling
// cycle instead of matching every pod: the pods of one workload share one
// key. The zero MatchKey means "unknown": never remember anything for it.
// Keys are garbage collected with the pods that hold them.
type MatchKey = unique.Handle[string]

// LabelsKey is the MatchKey of a pod's namespace and labels.
func LabelsKey(namespace string, l map[string]string) MatchKey {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b []byte
	b = appendField(b, namespace)
	for _, k := range keys {
		b = appendField(b, k)
		b = appendField(b, l[k])
	}
	return unique.Make(string(b))
}

// termKey is the MatchKey of what an affinity term selects: everything
// matches(term, pod) reads except the pod (the topology key is left out,
// it does not decide a match).
func termKey(namespaces sets.Set[string], sel labels.Selector, hasNSSel bool, nsSel labels.Selector) MatchKey {
	var b []byte
	ns := sets.List(namespaces)
	b = strconv.AppendInt(b, int64(len(ns)), 10)
	for _, n := range ns {
		b = appendField(b, n)
	}
	b = appendSelector(b, sel)
	if hasNSSel {
		b = append(b, 'N')
		b = appendSelector(b, nsSel)
	}
	return unique.Make(string(b))
}

// appendSelector writes a selector so that two selectors with the same
// bytes select the same sets. Everything and Nothing both print as "", so
// emptiness is written first.
func appendSelector(b []byte, s labels.Selector) []byte {
	if s == nil {
		return append(b, '0')
	}
	if s.Empty() {
		return append(b, 'E')
	}
	return appendField(append(b, 'S'), s.String())
}

// appendField writes s length-prefixed, so no content can imitate a
// boundary.
func appendField(b []byte, s string) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, ':')
	return append(b, s...)
}

// MatchMemo remembers selector answers (up to 64 bits each) for one
// scheduling cycle by MatchKey. It is safe for the parallel walks; a nil
// MatchMemo, like the zero key, remembers nothing.
type MatchMemo struct{ m sync.Map }

// Load returns the answer stored for k, if any.
func (mm *MatchMemo) Load(k MatchKey) (uint64, bool) {
	if mm == nil || k == (MatchKey{}) {
		return 0, false
	}
	v, ok := mm.m.Load(k)
	if !ok {
		return 0, false
	}
	return v.(uint64), true
}

// Store remembers v for k.
func (mm *MatchMemo) Store(k MatchKey, v uint64) {
	if mm != nil && k != (MatchKey{}) {
		mm.m.Store(k, v)
	}
}
