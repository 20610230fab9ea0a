package store

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"
)

// candidateMessages are the messages of TestCandidatesEqualScan's corpus:
// the phrase "connection reset" with other case and punctuation, rows
// holding both tokens but not the phrase, a token with a dot (one token,
// not two), and lines without them.
var candidateMessages = []string{
	"req %d connection reset by peer",
	"req %d: Connection-RESET; by peer",
	"req %d reset connection",
	"req %d connection was reset by peer",
	"req %d connection.reset by peer",
	"req %d connectionreset",
	"req %d CONNECTION\nreset\tBY",
	"req %d handled GET /api/v1/items path=/items/%d",
	"req %d peer reset by connection reset",
	"req %d upstream timeout, connection closed",
}

// TestCandidatesEqualScan checks that matching only the token index's
// candidate rows (and answering time ranges from block bounds, and
// skipping the sort keys of parts that cannot enter the page) gives the
// same results as scanning every row as before (scanAllRows), for
// phrases, tokens, terms and bools, with time ranges inside, across and
// around blocks, sorted both ways, paged, after a hit and aggregated, on
// blocks (several, overlapping in time, one row order not by time) and a
// head beside them.
func TestCandidatesEqualScan(t *testing.T) {
	s := openT(t, t.TempDir(), func(o *Options) { o.MaxAge = -1 })
	defer s.Close()
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	const perBatch = 3000
	for batch := range 4 {
		var ops []Op
		for j := range perBatch {
			i := batch*perBatch + j
			// Times go back and forth inside a block and blocks overlap.
			sec := batch*perBatch*2/3 + (j*7919)%perBatch
			msg := candidateMessages[(i*31+i/7)%len(candidateMessages)]
			var src []byte
			if i%17 == 3 {
				// The phrase in another field only.
				src = fmt.Appendf(nil, `{"@timestamp":%q,"other":"x connection reset %d"}`, base.Add(time.Duration(sec)*time.Second).Format(time.RFC3339Nano), i)
			} else {
				src = doc(i, base.Add(time.Duration(sec)*time.Second), fmt.Sprintf(msg, i, i%100))
			}
			ops = append(ops, Op{Index: fmt.Sprintf("logs-c%d", i%2), ID: fmt.Sprint(i), Create: true, Source: src})
		}
		mustCreate(t, s, ops)
		if batch < 3 {
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	blocks := 0
	for _, p := range s.snapshot([]string{"logs-*"}) {
		if p.blk != nil {
			blocks++
			p.blk.release()
		}
	}
	if blocks != 6 {
		t.Fatalf("%d blocks, want 6", blocks)
	}

	ts := func(sec int) string { return base.Add(time.Duration(sec) * time.Second).Format(time.RFC3339) }
	rng := func(from, to int) Query { return Range{Field: "@timestamp", GTE: ts(from), LT: ts(to)} }
	phrase := Text{Text: "connection reset", Phrase: true}
	queries := map[string]Query{
		"phrase":                 phrase,
		"phrase in message":      Text{Field: "message", Text: "Connection reset", Phrase: true},
		"phrase punctuated":      Text{Field: "message", Text: "connection-reset: BY", Phrase: true},
		"phrase three tokens":    Text{Field: "message", Text: "reset by peer", Phrase: true},
		"phrase reversed":        Text{Field: "message", Text: "reset connection", Phrase: true},
		"phrase dotted token":    Text{Field: "message", Text: "connection.reset", Phrase: true},
		"phrase absent":          Text{Field: "message", Text: "connection timeout", Phrase: true},
		"tokens":                 Text{Field: "message", Text: "reset connection"},
		"any token":              Text{Field: "message", Text: "timeout connectionreset", AnyToken: true},
		"term":                   Term{Field: "kubernetes.namespace_name", Value: "ns1"},
		"phrase in range":        Bool{Must: []Query{phrase}, Filter: []Query{rng(1000, 3000)}},
		"phrase across blocks":   Bool{Must: []Query{phrase}, Filter: []Query{rng(1500, 6500)}},
		"phrase around all":      Bool{Must: []Query{phrase}, Filter: []Query{rng(-100, 99999)}},
		"phrase near block ends": Bool{Must: []Query{phrase}, Filter: []Query{rng(2050, 5000)}},
		"phrase at block ends":   Bool{Must: []Query{phrase}, Filter: []Query{Range{Field: "@timestamp", GTE: ts(2000), LTE: ts(4999)}}},
		"phrase past block ends": Bool{Must: []Query{phrase}, Filter: []Query{Range{Field: "@timestamp", GT: ts(2000), LT: ts(4999)}}},
		"phrase in empty range":  Bool{Must: []Query{phrase}, Filter: []Query{rng(50000, 60000)}},
		"phrase and term":        Bool{Must: []Query{phrase, Term{Field: "kubernetes.namespace_name", Value: "ns2"}}, Filter: []Query{rng(500, 7000)}},
		"phrase not term":        Bool{Must: []Query{phrase}, MustNot: []Query{Term{Field: "kubernetes.namespace_name", Value: "ns2"}}},
		"should phrases":         Bool{Should: []Query{phrase, Text{Field: "message", Text: "upstream timeout", Phrase: true}}},
		"should phrase or range": Bool{Should: []Query{phrase, rng(0, 100)}},
		"should two of three":    Bool{Should: []Query{phrase, Text{Text: "peer"}, Term{Field: "stream", Value: "stdout"}}, MinimumShouldMatch: 2},
		"not phrase":             Bool{MustNot: []Query{phrase}, Filter: []Query{rng(2000, 2600)}},
		"range only":             rng(1000, 2000),
		"all":                    MatchAll{},
	}
	desc := []SortField{{Field: "@timestamp", Desc: true}}
	asc := []SortField{{Field: "@timestamp"}}
	requests := map[string]SearchRequest{
		"size 10 desc":           {Size: 10, Sort: desc},
		"size 10 desc track 100": {Size: 10, Sort: desc, TrackTotalHits: 100},
		"size 7 asc track 50":    {Size: 7, Sort: asc, TrackTotalHits: 50},
		"from 20 size 30 desc":   {From: 20, Size: 30, Sort: desc},
		"size 0 exact":           {TrackTotalHits: -1},
		"size 0 sorted":          {Sort: desc, TrackTotalHits: 20},
		"after":                  {Size: 10, Sort: desc, SearchAfter: []int64{base.Add(4000*time.Second).UnixNano() / 1e6, 0}},
		"doc order":              {Size: 15, Sort: []SortField{{Field: "_doc"}}},
		"unsorted":               {Size: 15},
		"aggs": {Size: 3, Sort: desc, TrackTotalHits: -1, Aggs: []AggRequest{
			{Name: "h", DateHistogram: &DateHistogram{Fixed: 10 * time.Minute}},
			{Name: "ns", Terms: &TermsAgg{Field: "kubernetes.namespace_name.keyword"}},
		}},
	}
	search := func(req SearchRequest, scan bool) *SearchResult {
		t.Helper()
		scanAllRows = scan
		defer func() { scanAllRows = false }()
		res, err := s.Search(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	withHits := 0
	for qn, q := range queries {
		for rn, r := range requests {
			req := r
			req.Indices = []string{"logs-*"}
			req.Query = q
			want := search(req, true)
			got := search(req, false)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s, %s: candidates give total %d (exact %v), hits %v; scanning gives total %d (exact %v), hits %v",
					qn, rn, got.Total, got.TotalExact, ids(got.Hits), want.Total, want.TotalExact, ids(want.Hits))
			}
			if want.Total > 0 {
				withHits++
			}
		}
	}
	// The comparison is not vacuous: most cases find something, and the
	// phrase in message finds exactly the rows of the 4 messages holding
	// it (with other case and punctuation between the tokens).
	if withHits < len(queries)*len(requests)*2/3 {
		t.Fatalf("only %d of %d cases found hits", withHits, len(queries)*len(requests))
	}
	n, err := s.Count(context.Background(), []string{"logs-*"}, Text{Field: "message", Text: "connection reset", Phrase: true})
	if err != nil {
		t.Fatal(err)
	}
	var wantN int64
	for i := range 4 * perBatch {
		if i%17 == 3 {
			continue
		}
		switch (i*31 + i/7) % len(candidateMessages) {
		case 0, 1, 6, 8:
			wantN++
		}
	}
	if n != wantN {
		t.Fatalf("phrase count %d, want %d", n, wantN)
	}
}
