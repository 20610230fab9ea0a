package store

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// fill stores n documents in index "logs-kubernetes-ns<i%3>": message
// "line <i> level=<info|error>" at base+i seconds; every tenth says
// "disk full error".
func fill(t *testing.T, s *Store, n int, base time.Time) {
	t.Helper()
	var ops []Op
	for i := range n {
		msg := fmt.Sprintf("line %d level=info", i)
		if i%10 == 0 {
			msg = fmt.Sprintf("line %d disk full error", i)
		}
		ops = append(ops, Op{Index: fmt.Sprintf("logs-kubernetes-ns%d", i%3), ID: fmt.Sprint(i), Create: true, Source: doc(i, base.Add(time.Duration(i)*time.Second), msg)})
	}
	mustCreate(t, s, ops)
}

func TestSearch(t *testing.T) {
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, flushed := range []bool{false, true} {
		t.Run(fmt.Sprint("flushed=", flushed), func(t *testing.T) {
			s := openT(t, t.TempDir())
			defer s.Close()
			fill(t, s, 3000, base)
			if flushed {
				if err := s.Flush(); err != nil {
					t.Fatal(err)
				}
				// More in the head beside the blocks.
				fill2 := []Op{{Index: "logs-kubernetes-ns0", ID: "x1", Create: true, Source: doc(1, base.Add(-time.Hour), "early bird error")}}
				if _, err := s.Bulk(context.Background(), fill2); err != nil {
					t.Fatal(err)
				}
			}
			extra := int64(0)
			if flushed {
				extra = 1
			}
			ts := func(sec int) string { return base.Add(time.Duration(sec) * time.Second).Format(time.RFC3339) }
			cases := []struct {
				name string
				q    Query
				idx  string
				want int64
			}{
				{"all", MatchAll{}, "logs-*", 3000 + extra},
				{"one index", MatchAll{}, "logs-kubernetes-ns1", 1000},
				{"token", Text{Text: "error"}, "", 300 + extra},
				{"token in field", Text{Field: "message", Text: "ERROR"}, "", 300 + extra},
				{"token wrong field", Text{Field: "stream", Text: "error"}, "", 0},
				{"phrase", Text{Field: "message", Text: "disk full", Phrase: true}, "", 300},
				{"phrase order", Text{Field: "message", Text: "full disk", Phrase: true}, "", 0},
				{"and tokens", Text{Field: "message", Text: "full disk"}, "", 300},
				{"term keyword", Term{Field: "kubernetes.namespace_name.keyword", Value: "ns1"}, "", 1000 + extra},
				{"term token", Term{Field: "kubernetes.namespace_name", Value: "ns2"}, "", 1000},
				{"dotted label beside object", Term{Field: "kubernetes.labels.app.kubernetes.io/name", Value: "web-1"}, "", 1500 + extra},
				{"label app", Term{Field: "kubernetes.labels.app", Value: "web"}, "", 3000 + extra},
				{"time range", Range{Field: "@timestamp", GTE: ts(100), LT: ts(200)}, "", 100},
				{"numeric range", Range{Field: "n", GT: "2990"}, "", 9},
				{"wildcard", Wildcard{Field: "kubernetes.pod_name", Pattern: "pod-[3]*"}, "", 0},
				{"wildcard token", Wildcard{Field: "message", Pattern: "dis*"}, "", 300},
				{"exists", Exists{Field: "kubernetes.pod_name"}, "", 3000 + extra},
				{"exists missing", Exists{Field: "nope"}, "", 0},
				{"bool", Bool{Must: []Query{Text{Field: "message", Text: "error"}}, Filter: []Query{Range{Field: "@timestamp", GTE: ts(0), LTE: ts(999)}}, MustNot: []Query{Term{Field: "kubernetes.namespace_name", Value: "ns0"}}}, "", 66},
				{"should", Bool{Should: []Query{Term{Field: "n", Value: "5"}, Term{Field: "n", Value: "7"}}}, "", 2},
				{"ids", IDs{Values: []string{"5", "6", "nope"}}, "", 2},
			}
			for _, c := range cases {
				idx := c.idx
				if idx == "" {
					idx = "logs-*"
				}
				n, err := s.Count(context.Background(), []string{idx}, c.q)
				if err != nil {
					t.Fatal(err)
				}
				if n != c.want {
					t.Errorf("%s: count = %d, want %d", c.name, n, c.want)
				}
			}

			// Sorted page with search_after.
			req := SearchRequest{Indices: []string{"logs-*"}, Query: Text{Field: "message", Text: "error"}, Size: 5, Sort: []SortField{{Field: "@timestamp", Desc: true}}}
			res, err := s.Search(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Hits) != 5 || res.Hits[0].ID != "2990" || res.Hits[4].ID != "2950" {
				t.Fatalf("hits %+v", ids(res.Hits))
			}
			req.SearchAfter = res.Hits[4].Sort
			res, err = s.Search(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Hits) != 5 || res.Hits[0].ID != "2940" {
				t.Fatalf("page 2 hits %+v", ids(res.Hits))
			}
			src := string(res.Hits[0].Source)
			want := string(doc(2940, base.Add(2940*time.Second), "line 2940 disk full error"))
			if src != want {
				t.Fatalf("source\n got %s\nwant %s", src, want)
			}

			// Aggregations.
			res, err = s.Search(context.Background(), SearchRequest{Indices: []string{"logs-*"}, Query: Range{Field: "@timestamp", GTE: ts(0), LT: ts(3000)}, Aggs: []AggRequest{
				{Name: "h", DateHistogram: &DateHistogram{Fixed: 10 * time.Minute}},
				{Name: "ns", Terms: &TermsAgg{Field: "kubernetes.namespace_name.keyword", Size: 2}},
			}})
			if err != nil {
				t.Fatal(err)
			}
			h := res.Aggs[0]
			if len(h.Buckets) != 5 || h.Buckets[0].Count != 600 || h.Buckets[0].Key != base.UnixMilli() {
				t.Fatalf("histogram %+v", h)
			}
			ns := res.Aggs[1]
			if len(ns.Buckets) != 2 || ns.Buckets[0].KeyString != "ns0" || ns.Buckets[0].Count != 1000 || ns.SumOther != 1000 {
				t.Fatalf("terms %+v", ns)
			}
		})
	}
}

func ids(hs []Hit) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h.ID)
	}
	return out
}

func TestRetention(t *testing.T) {
	now := time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)
	s := openT(t, t.TempDir(), func(o *Options) {
		o.MaxAge = 24 * time.Hour
		o.Now = func() time.Time { return now }
	})
	defer s.Close()
	// Three blocks: 3 days old, 2 hours old, 1 hour old.
	for k, age := range []time.Duration{72 * time.Hour, 2 * time.Hour, time.Hour} {
		var ops []Op
		for i := range 100 {
			ops = append(ops, Op{Index: "logs-a", ID: fmt.Sprint(k, "-", i), Create: true, Source: doc(i, now.Add(-age), "x")})
		}
		if _, err := s.Bulk(context.Background(), ops); err != nil {
			t.Fatal(err)
		}
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	s.applyRetention()
	if n := docs(t, s); n != 200 {
		t.Fatalf("after age retention docs = %d, want 200", n)
	}
	// An id of a dropped block can be used again.
	res, _ := s.Bulk(context.Background(), []Op{{Index: "logs-a", ID: "0-1", Create: true, Source: doc(1, now, "again")}})
	if res[0].Status != 201 {
		t.Fatalf("reuse of a dropped id: %d", res[0].Status)
	}
	// Size: keep only the newest block.
	infos := s.Indices()
	s.opts.MaxBytes = infos[0].Bytes/2 - 1
	s.applyRetention()
	if n := docs(t, s); n != 101 {
		t.Fatalf("after size retention docs = %d, want 101 (newest block + head)", n)
	}
}
