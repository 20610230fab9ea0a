package store

import (
	"strconv"
	"testing"
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
