package backend

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// queryObjs is n pod-like objects in shuffled order, spread over a few
// namespaces and phases, with creation times that repeat (so sorts need
// their tie-break).
func queryObjs(n int, r *rand.Rand) []*unstructured.Unstructured {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	phases := []string{"Running", "Pending", "Succeeded"}
	out := make([]*unstructured.Unstructured, n)
	for i := range out {
		o := obj(fmt.Sprintf("ns-%d", r.IntN(7)), fmt.Sprintf("pod-%05d", r.IntN(n)), t0.Add(time.Duration(r.IntN(n/3+1))*time.Second),
			map[string]string{"app": fmt.Sprintf("app-%d", i%13)}, phases[r.IntN(len(phases))])
		o.Object["spec"] = map[string]any{"nodeName": fmt.Sprintf("node-%03d", r.IntN(100))}
		out[i] = o
	}
	return out
}

// sortAll is the reference: filter, sort everything, cut the page.
func sortAll(q *query, objs []*unstructured.Unstructured) ([]*unstructured.Unstructured, int) {
	var rows []queryRow
	for _, o := range objs {
		if q.match(o) {
			rows = append(rows, q.row(o))
		}
	}
	sortRows(q, rows)
	total := len(rows)
	lo := min(q.page.Offset, total)
	hi := min(lo+q.page.Limit, total)
	out := make([]*unstructured.Unstructured, 0, hi-lo)
	for _, r := range rows[lo:hi] {
		out = append(out, r.o)
	}
	return out, total
}

// TestQueryPageMatchesFullSort: the page run returns (selecting only the
// rows up to the page's end) is exactly the page of a full sort, for
// every sort, direction and a range of windows, on data with ties.
func TestQueryPageMatchesFullSort(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	objs := queryObjs(3000, r)
	for _, by := range []string{"", "name", "namespace", "age", "status.phase", "spec.nodeName"} {
		for _, desc := range []bool{false, true} {
			for _, p := range []Page{{Limit: 1}, {Limit: 50}, {Offset: 100, Limit: 200}, {Offset: 2900, Limit: 500}, {Offset: 1400, Limit: 300}, {Offset: 5000, Limit: 10}} {
				q, err := compileQuery(Filter{Labels: "app!=app-3"}, Sort{By: by, Desc: desc}, p)
				if err != nil {
					t.Fatal(err)
				}
				got, total := q.run(objs)
				want, wantTotal := sortAll(q, objs)
				if total != wantTotal || keys(got) != keys(want) {
					t.Fatalf("sort %q desc=%v page %+v: got %d rows of %d, want %d of %d\n got %.200s\nwant %.200s", by, desc, p, len(got), total, len(want), wantTotal, keys(got), keys(want))
				}
			}
		}
	}
}

// BenchmarkQueryRun is one page of 200 of 30,000 pods, the work a
// dashboard subscription does on every change.
func BenchmarkQueryRun(b *testing.B) {
	objs := queryObjs(30000, rand.New(rand.NewPCG(1, 2)))
	for _, by := range []string{"name", "age", "spec.nodeName"} {
		b.Run(by, func(b *testing.B) {
			q, err := compileQuery(Filter{}, Sort{By: by}, Page{Limit: 200})
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				q.run(objs)
			}
		})
	}
}
