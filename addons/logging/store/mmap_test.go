package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// mmapQueries read every kind of block data: token index postings,
// chunked columns (phrase candidates, sources), timestamps, ids, and
// whole-column scans (wildcard, range).
func mmapQueries() []SearchRequest {
	desc := []SortField{{Field: "@timestamp", Desc: true}}
	all := []string{"logs-*"}
	return []SearchRequest{
		{Indices: all, Query: Text{Field: "message", Text: "connection reset", Phrase: true}, Size: 15, Sort: desc, TrackTotalHits: -1},
		{Indices: all, Query: Text{Text: "timeout"}, Size: 5, From: 3, Sort: []SortField{{Field: "@timestamp"}}},
		{Indices: all, Query: Term{Field: "level", Value: "ERROR"}, Size: 100, Sort: desc, TrackTotalHits: -1},
		{Indices: all, Query: Wildcard{Field: "message", Pattern: "upstr*"}, Size: 7, Sort: desc},
		{Indices: all, Query: Bool{Must: []Query{Text{Field: "message", Text: "request"}}, Filter: []Query{Range{Field: "n", GTE: "50", LT: "120"}}}, Size: 200, Sort: desc, TrackTotalHits: -1},
		{Indices: all, Query: MatchAll{}, Size: 3, Sort: desc, TrackTotalHits: -1, Aggs: []AggRequest{
			{Name: "t", Terms: &TermsAgg{Field: "level", Size: 10}},
			{Name: "h", DateHistogram: &DateHistogram{Field: "@timestamp", Fixed: time.Minute}},
		}},
		{Indices: []string{"logs-a1"}, Query: Text{Field: "message", Text: "api/v1 items", Phrase: true}, Size: 10000, TrackTotalHits: -1},
	}
}

func runQueries(t *testing.T, s *Store) []*SearchResult {
	t.Helper()
	var out []*SearchResult
	for i, q := range mmapQueries() {
		res, err := s.Search(context.Background(), q)
		if err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
		out = append(out, res)
	}
	return out
}

// TestMappedBlocksSameResults checks that searches over mapped blocks
// (written in this process, and opened again from disk, with and without
// the decode cache) answer exactly as over the in-memory heads.
func TestMappedBlocksSameResults(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	fillIndexDocs(t, s)
	heads := runQueries(t, s)
	if heads[0].Total != 20 || len(heads[6].Hits) != 80 {
		t.Fatalf("unexpected head results: %d phrase hits, %d path hits", heads[0].Total, len(heads[6].Hits))
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	parts := s.snapshot([]string{"logs-*"})
	for _, p := range parts {
		if p.blk == nil || p.blk.data == nil {
			t.Fatalf("part %d is not a mapped block", p.gen)
		}
	}
	releaseParts(parts)
	check := func(name string, got []*SearchResult) {
		t.Helper()
		for i := range heads {
			if !reflect.DeepEqual(got[i], heads[i]) {
				t.Errorf("%s: query %d differs from the heads' answer:\n got %+v\nwant %+v", name, i, got[i], heads[i])
			}
		}
	}
	check("written blocks", runQueries(t, s))
	check("written blocks, cached", runQueries(t, s))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, cache := range []int{0, -1} {
		s := openT(t, dir, func(o *Options) { o.CacheBytes = cache })
		check(fmt.Sprint("reopened, cache ", cache), runQueries(t, s))
		check(fmt.Sprint("reopened again, cache ", cache), runQueries(t, s))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSearchWhileRetentionDropsBlock drops (and unlinks) the blocks a
// search has just taken in its snapshot, before it reads them: the search
// must still read them whole (a use after unmap would fault), and the
// mappings must go when it ends.
func TestSearchWhileRetentionDropsBlock(t *testing.T) {
	var now atomic.Int64
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	now.Store(base.Add(time.Hour).UnixNano())
	s := openT(t, t.TempDir(), func(o *Options) {
		o.MaxAge = 24 * time.Hour
		o.CacheBytes = -1 // every read goes to the mapping
		o.Now = func() time.Time { return time.Unix(0, now.Load()) }
	})
	defer s.Close()
	fillIndexDocs(t, s)
	want := runQueries(t, s) // from the heads
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	var blocks []*block
	for _, idx := range s.match([]string{"logs-*"}) {
		blocks = append(blocks, idx.blocks...)
	}
	if len(blocks) != 2 {
		t.Fatalf("%d blocks, want 2", len(blocks))
	}

	dropped := 0
	afterSnapshot = func() {
		dropped++
		if dropped > 1 {
			return
		}
		// Every block of the store is older than MaxAge now.
		now.Store(base.Add(48 * time.Hour).UnixNano())
		s.applyRetention()
		for _, b := range blocks {
			if _, err := os.Stat(b.path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("block %s still on disk after retention: %v", b.path, err)
			}
			if r := b.refs.Load(); r != 1 {
				t.Errorf("block %s: %d references during the search, want 1 (the search's)", b.path, r)
			}
		}
	}
	defer func() { afterSnapshot = nil }()
	// The first query dropped the blocks; the later ones find nothing.
	got := runQueries(t, s)
	afterSnapshot = nil
	if dropped != len(mmapQueries()) {
		t.Fatalf("hook ran %d times", dropped)
	}
	if !reflect.DeepEqual(got[0], want[0]) {
		t.Fatalf("search over blocks dropped during it:\n got %+v\nwant %+v", got[0], want[0])
	}
	for _, b := range blocks {
		if r := b.refs.Load(); r != 0 {
			t.Errorf("block %s: %d references after the search, want 0 (unmapped)", b.path, r)
		}
	}
	if n := docs(t, s); n != 0 {
		t.Fatalf("%d docs left after retention", n)
	}
	res, err := s.Search(context.Background(), mmapQueries()[0])
	if err != nil || res.Total != 0 {
		t.Fatalf("search after retention: %v, %+v", err, res)
	}
}

// TestSearchConcurrentWithDrops runs searches while blocks are written,
// dropped by retention and deleted with their index, for the race
// detector and for faults from reading unmapped blocks.
func TestSearchConcurrentWithDrops(t *testing.T) {
	var now atomic.Int64
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	now.Store(base.UnixNano())
	s := openT(t, t.TempDir(), func(o *Options) {
		o.MaxAge = time.Hour
		o.CacheBytes = -1
		o.Now = func() time.Time { return time.Unix(0, now.Load()) }
	})
	defer s.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var searches atomic.Int64
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, q := range mmapQueries() {
					if _, err := s.Search(context.Background(), q); err != nil {
						t.Errorf("search: %v", err)
						return
					}
					searches.Add(1)
				}
			}
		})
	}
	for round := range 30 {
		ts := base.Add(time.Duration(round) * 30 * time.Minute)
		now.Store(ts.UnixNano())
		var ops []Op
		for i := range 300 {
			ops = append(ops, Op{Index: fmt.Sprintf("logs-a%d", i%2), Create: true,
				Source: fmt.Appendf(nil, `{"@timestamp":%q,"level":"ERROR","message":"request %d: connection reset by peer","n":%d}`, ts.Format(time.RFC3339Nano), i, i)})
		}
		mustCreate(t, s, ops)
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		s.applyRetention()
		if round%10 == 9 {
			if err := s.DeleteIndex(context.Background(), "logs-a1"); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(stop)
	wg.Wait()
	if searches.Load() == 0 {
		t.Fatal("no search ran")
	}
}
