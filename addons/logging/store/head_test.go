package store

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDocList: documents come back by position and in order across the
// small first pages and the full ones, a snapshot keeps what it had while
// the list grows, and no page is larger than docPage.
func TestDocList(t *testing.T) {
	var l docList
	var snaps []docList
	const n = 5*docPage + 77
	for i := range n {
		if i%333 == 0 || i == firstPage || i == docPage {
			snaps = append(snaps, l.snapshot())
		}
		l.append(hdoc{ts: int64(i), id: strconv.Itoa(i)})
	}
	if l.len() != n {
		t.Fatalf("len %d, want %d", l.len(), n)
	}
	total := 0
	for p, pg := range l.pages {
		if len(pg) > docPage || (p > 0 && p < smallPages && len(pg) != firstPage<<max(0, p-1)) {
			t.Errorf("page %d holds %d", p, len(pg))
		}
		total += len(pg)
	}
	if total-n >= docPage {
		t.Errorf("%d slots for %d documents", total, n)
	}
	for i := range n {
		if d := l.at(i); d.ts != int64(i) || d.id != strconv.Itoa(i) {
			t.Fatalf("at(%d) = %+v", i, d)
		}
	}
	next := 0
	for i, d := range l.all() {
		if i != next || d.ts != int64(i) {
			t.Fatalf("all: %d %+v after %d", i, d, next)
		}
		next++
	}
	if next != n {
		t.Fatalf("all yielded %d", next)
	}
	for _, s := range snaps {
		k := 0
		for i, d := range s.all() {
			if d.ts != int64(i) {
				t.Fatalf("snapshot of %d: %d = %+v", s.len(), i, d)
			}
			k++
		}
		if k != s.len() {
			t.Fatalf("snapshot of %d yielded %d", s.len(), k)
		}
	}
	for i := range l.all() { // stopping early
		if i == 40 {
			break
		}
	}
}

// TestHeadMemoryReuse: a written head's memory goes to the next heads
// only once no search holds it. A snapshot taken before a seal keeps its
// documents intact while later heads fill; once released, the next head
// fills the same memory, and every document reads back right.
func TestHeadMemoryReuse(t *testing.T) {
	ctx := t.Context()
	s := openT(t, t.TempDir(), func(o *Options) { o.MaxAge = -1 })
	defer s.Close()
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	// ~1.5 KiB documents: a few thousand fill several arena chunks and
	// full document pages.
	src := func(set string, i int) []byte {
		return doc(i, base.Add(time.Duration(i)*time.Millisecond), fmt.Sprintf("%s-%d %s", set, i, strings.Repeat(set, 1500)))
	}
	const n = 3000
	put := func(set string) {
		t.Helper()
		ops := make([]Op, n)
		for i := range ops {
			ops[i] = Op{Index: "logs-a", ID: fmt.Sprintf("%s-%d", set, i), Create: true, Source: src(set, i)}
		}
		res, err := s.Bulk(ctx, ops)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.Status != 201 {
				t.Fatalf("%+v", r)
			}
		}
	}
	same := func(got, want []byte) bool {
		var g, w any
		return json.Unmarshal(got, &g) == nil && json.Unmarshal(want, &w) == nil && reflect.DeepEqual(g, w)
	}
	checkPart := func(p *part, set string) {
		t.Helper()
		for i := range p.n {
			if p.id(i) != fmt.Sprintf("%s-%d", set, i) || !same(p.source(i), src(set, i)) {
				t.Fatalf("head snapshot row %d: %s %s", i, p.id(i), p.source(i))
			}
		}
	}
	kept := func() (chunks, pages int) {
		s.mem.mu.Lock()
		defer s.mem.mu.Unlock()
		return len(s.mem.chunks), len(s.mem.pages)
	}
	put("a")
	parts := s.snapshot([]string{"logs-a"})
	if len(parts) != 1 || parts[0].h == nil || parts[0].n != n {
		t.Fatalf("snapshot %+v", parts)
	}
	if err := s.Flush(); err != nil { // head a written; the snapshot holds it
		t.Fatal(err)
	}
	if c, p := kept(); c != 0 || p != 0 {
		t.Fatal("memory of a head a search holds was kept for reuse")
	}
	put("b")
	checkPart(parts[0], "a")
	releaseParts(parts)
	if c, p := kept(); c == 0 || p == 0 {
		t.Fatalf("released head: %d chunks, %d pages kept", c, p)
	}
	if err := s.Flush(); err != nil { // head b written, nothing holds it
		t.Fatal(err)
	}
	c0, p0 := kept()
	put("c") // into reused memory
	if c, p := kept(); c >= c0 || p >= p0 {
		t.Fatalf("the next head did not reuse memory: %d -> %d chunks, %d -> %d pages kept", c0, c, p0, p)
	}
	parts = s.snapshot([]string{"logs-a"})
	for _, p := range parts {
		if p.h != nil {
			checkPart(p, "c")
		}
	}
	releaseParts(parts)
	res, err := s.Search(ctx, SearchRequest{Indices: []string{"logs-a"}, Size: 10000, TrackTotalHits: -1})
	if err != nil || res.Total != 3*n {
		t.Fatalf("search: %v, %d hits", err, res.Total)
	}
	for _, h := range res.Hits {
		set, i, _ := strings.Cut(h.ID, "-")
		k, _ := strconv.Atoi(i)
		if !same(h.Source, src(set, k)) {
			t.Fatalf("%s: %s", h.ID, h.Source)
		}
	}
	// Unused for a trim period: let go.
	s.mem.trim()
	s.mem.trim()
	if c, p := kept(); c != 0 || p != 0 {
		t.Fatal("trim kept unused memory")
	}
}
