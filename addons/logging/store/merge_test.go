package store

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"
)

// TestMergeEqualsOneStore splits a corpus over three stores (contiguous
// 100-second runs dealt in turn, as agents failing over between servers
// would) and checks that Merge of the three answers equals the answer of
// one store holding everything: pages of sorted hits (with from, and paged
// through with search_after), totals, the tracking limit, and date
// histogram and terms aggregations with sub-aggregations.
func TestMergeEqualsOneStore(t *testing.T) {
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	all := openT(t, t.TempDir())
	defer all.Close()
	var parts [3]*Store
	var ops [3][]Op
	var allOps []Op
	for k := range parts {
		parts[k] = openT(t, t.TempDir())
		defer parts[k].Close()
	}
	const n = 3000
	for i := range n {
		msg := fmt.Sprintf("line %d level=info", i)
		if i%10 == 0 {
			msg = fmt.Sprintf("line %d connection reset by peer", i)
		}
		op := Op{Index: fmt.Sprintf("logs-kubernetes-ns%d", i%3), ID: fmt.Sprint(i), Create: true, Source: doc(i, base.Add(time.Duration(i)*time.Second), msg)}
		allOps = append(allOps, op)
		k := (i / 100) % 3
		ops[k] = append(ops[k], op)
	}
	mustCreate(t, all, allOps)
	for k := range parts {
		mustCreate(t, parts[k], ops[k])
	}
	// Blocks on disk for one store, heads for the others.
	if err := parts[1].Flush(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	merged := func(req SearchRequest) *SearchResult {
		t.Helper()
		sub := req
		sub.From, sub.Size = 0, req.From+req.Size
		var rs []*SearchResult
		for _, s := range parts {
			r, err := s.Search(ctx, sub)
			if err != nil {
				t.Fatal(err)
			}
			rs = append(rs, r)
		}
		return Merge(req, rs)
	}
	single := func(req SearchRequest) *SearchResult {
		t.Helper()
		r, err := all.Search(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	ids := func(r *SearchResult) []string {
		var out []string
		for _, h := range r.Hits {
			out = append(out, h.ID)
		}
		return out
	}
	desc := []SortField{{Field: "@timestamp", Desc: true}}
	asc := []SortField{{Field: "@timestamp"}}
	phrase := Text{Field: "message", Text: "connection reset", Phrase: true}
	cases := []struct {
		name string
		req  SearchRequest
	}{
		{"newest page", SearchRequest{Sort: desc, Size: 10}},
		{"deep page", SearchRequest{Sort: desc, From: 250, Size: 20}},
		{"oldest phrase", SearchRequest{Query: phrase, Sort: asc, From: 5, Size: 50}},
		{"exact total", SearchRequest{Sort: desc, Size: 1, TrackTotalHits: -1}},
		{"tracking limit", SearchRequest{Sort: asc, Size: 5, TrackTotalHits: 100}},
		{"aggregations", SearchRequest{Query: phrase, Size: 0, Aggs: []AggRequest{
			{Name: "per_minute", DateHistogram: &DateHistogram{Fixed: time.Minute}, Aggs: []AggRequest{
				{Name: "ns", Terms: &TermsAgg{Field: "kubernetes.namespace_name", Size: 10}}}},
			{Name: "pods", Terms: &TermsAgg{Field: "kubernetes.pod_name", Size: 10}},
			{Name: "per_hour", DateHistogram: &DateHistogram{Calendar: "hour", MinDocCount: 1}},
		}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, want := merged(c.req), single(c.req)
			if got.Total != want.Total || got.TotalExact != want.TotalExact {
				t.Fatalf("total %d exact %v, one store %d exact %v", got.Total, got.TotalExact, want.Total, want.TotalExact)
			}
			if g, w := ids(got), ids(want); !reflect.DeepEqual(g, w) {
				t.Fatalf("hits\n got %v\nwant %v", g, w)
			}
			for i := range got.Hits {
				if !reflect.DeepEqual(got.Hits[i].Sort, want.Hits[i].Sort) || string(got.Hits[i].Source) != string(want.Hits[i].Source) {
					t.Fatalf("hit %d: sort %v source %s, one store %v %s", i, got.Hits[i].Sort, got.Hits[i].Source, want.Hits[i].Sort, want.Hits[i].Source)
				}
			}
			if !reflect.DeepEqual(got.Aggs, want.Aggs) {
				t.Fatalf("aggregations\n got %+v\nwant %+v", got.Aggs, want.Aggs)
			}
		})
	}

	// search_after pages through the merged answers visit every document
	// once, in the one store's order.
	var paged []string
	req := SearchRequest{Sort: asc, Size: 128, TrackTotalHits: -1}
	for {
		r := merged(req)
		if len(r.Hits) == 0 {
			break
		}
		paged = append(paged, ids(r)...)
		req.SearchAfter = r.Hits[len(r.Hits)-1].Sort
	}
	want := ids(single(SearchRequest{Sort: asc, Size: n}))
	if !reflect.DeepEqual(paged, want) {
		t.Fatalf("search_after over the merge: %d ids, one store %d (first difference in %v...)", len(paged), len(want), paged[:min(5, len(paged))])
	}

	// Terms cut to a smaller size keep every document counted: in the
	// buckets or in sum_other_doc_count.
	r := merged(SearchRequest{Size: 0, TrackTotalHits: -1, Aggs: []AggRequest{{Name: "pods", Terms: &TermsAgg{Field: "kubernetes.pod_name", Size: 3}}}})
	var counted int64
	for _, b := range r.Aggs[0].Buckets {
		counted += b.Count
	}
	if len(r.Aggs[0].Buckets) != 3 || counted+r.Aggs[0].SumOther != n {
		t.Fatalf("terms size 3: %d buckets, %d + other %d of %d documents", len(r.Aggs[0].Buckets), counted, r.Aggs[0].SumOther, n)
	}
}
