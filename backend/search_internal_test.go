package backend

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func named(ns, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{}}
	u.SetNamespace(ns)
	u.SetName(name)
	return u
}

func searchNames(q string, limit int, kinds ...[]string) []string {
	sc := newSearcher(q, limit)
	for i, names := range kinds {
		var objs []*unstructured.Unstructured
		for _, n := range names {
			objs = append(objs, named("default", n))
		}
		sc.scan(i, objs)
	}
	hits, _ := sc.results()
	var out []string
	for _, h := range hits {
		out = append(out, h.o.GetName())
	}
	return out
}

func TestFuzzyRanking(t *testing.T) {
	sc := newSearcher("pac", 10)
	for _, tc := range []struct {
		name string
		ok   bool
	}{{"payments-api-config", true}, {"pac", true}, {"PAC-Man", true}, {"cap", false}, {"pa", false}, {"", false}} {
		if _, ok := sc.score(tc.name); ok != tc.ok {
			t.Errorf("score(pac, %q) matched=%v, want %v", tc.name, ok, tc.ok)
		}
	}
	// Word starts beat scattered letters; contiguous beats split; a
	// prefix beats the same letters later; the exact name is first.
	order := func(q string, names ...string) {
		t.Helper()
		got := searchNames(q, 10, names)
		for i := range names {
			if got[i] != names[i] {
				t.Errorf("query %q ranked %q, want %q", q, got, names)
				return
			}
		}
	}
	order("pac", "pac", "payments-api-config", "space-cadet")
	order("web", "web-7d9f", "my-web", "awe-bar")
	order("api", "api-gateway", "payments-api", "rapid")
	order("nginx", "nginx", "nginx-ingress-controller", "n-g-i-n-x")
	order("dbp", "db-primary", "debug-pod")
	// Ties: the earlier kind first, then the shorter name.
	got := searchNames("web", 3, []string{"web-long-name"}, []string{"web-a", "web"})
	if fmt.Sprint(got) != "[web web-long-name web-a]" {
		t.Errorf("ties: got %v", got)
	}
	// The limit keeps the best, matched counts all.
	sc = newSearcher("pod", 2)
	var objs []*unstructured.Unstructured
	for i := range 100 {
		objs = append(objs, named("ns", fmt.Sprintf("pod-%03d", i)))
	}
	objs = append(objs, named("ns", "pod"))
	sc.scan(0, objs)
	hits, matched := sc.results()
	if matched != 101 || len(hits) != 2 || hits[0].o.GetName() != "pod" || hits[1].o.GetName() != "pod-000" {
		t.Errorf("limit: matched %d, hits %v", matched, hits)
	}
}

// pods30k is 30,000 pod-like names as a bench cluster has them, plus a
// few others.
func pods30k() []*unstructured.Unstructured {
	objs := make([]*unstructured.Unstructured, 0, 30010)
	for i := range 30000 {
		objs = append(objs, named(fmt.Sprintf("team-%02d", i%50), fmt.Sprintf("bench-web-%05d-7d9f8b6c4-x%04d", i, i%9973)))
	}
	for i := range 10 {
		objs = append(objs, named("payments", fmt.Sprintf("payments-api-%d", i)))
	}
	return objs
}

// TestSearch30kPods: one query over 30,000 cached pods answers in
// milliseconds, for a query matching few names and one matching all.
func TestSearch30kPods(t *testing.T) {
	objs := pods30k()
	for _, q := range []string{"pmtapi", "bench", "bw0042", "zzzz"} {
		t0 := time.Now()
		sc := newSearcher(q, 20)
		sc.scan(0, objs)
		hits, matched := sc.results()
		took := time.Since(t0)
		t.Logf("q=%q matched %d, %d results, %v", q, matched, len(hits), took)
		if took > 500*time.Millisecond { // generous for -race on a shared machine
			t.Errorf("q=%q took %v", q, took)
		}
		if q == "pmtapi" && (matched != 10 || hits[0].o.GetNamespace() != "payments") {
			t.Errorf("pmtapi: matched %d", matched)
		}
		if q == "bench" && matched != 30000 {
			t.Errorf("bench: matched %d", matched)
		}
	}
}

func BenchmarkSearch30kPods(b *testing.B) {
	objs := pods30k()
	for _, q := range []string{"pmtapi", "bench", "bw0042"} {
		b.Run(q, func(b *testing.B) {
			for b.Loop() {
				sc := newSearcher(q, 20)
				sc.scan(0, objs)
				sc.results()
			}
		})
	}
}
