package store

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestIDSetCollisions forces every id onto one hash: distinct ids are never
// taken for duplicates, and real duplicates are still found, in the head,
// in blocks, after a crash (WAL replay) and a clean restart, and after a
// block is dropped by retention.
func TestIDSetCollisions(t *testing.T) {
	for name, h := range map[string]func(string) uint64{
		"all one hash":   func(string) uint64 { return 7 },
		"hash by length": func(id string) uint64 { return uint64(len(id)) },
	} {
		t.Run(name, func(t *testing.T) {
			old := idHash
			idHash = h
			defer func() { idHash = old }()
			testIDSet(t)
		})
	}
}

func testIDSet(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openT(t, dir, func(o *Options) { o.MaxAge = -1 })
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ops := func(prefix string, from, to int, create bool) []Op {
		var out []Op
		for i := from; i < to; i++ {
			out = append(out, Op{Index: "logs-a", ID: fmt.Sprint(prefix, i), Create: create, Source: doc(i, base.Add(time.Duration(i)*time.Second), "x")})
		}
		return out
	}
	want := func(s *Store, ops []Op, status int) {
		t.Helper()
		res, err := s.Bulk(ctx, ops)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range res {
			if r.Status != status {
				t.Fatalf("%s: status %d, want %d (%v)", ops[i].ID, r.Status, status, r.Err)
			}
		}
	}
	want(s, ops("a", 0, 40, true), 201)
	want(s, ops("a", 0, 40, true), 409)
	want(s, ops("a", 0, 40, false), 200) // index: noop, first document kept
	want(s, ops("a", 40, 50, false), 201)
	if err := s.Flush(); err != nil { // a0..a49 in a block
		t.Fatal(err)
	}
	want(s, ops("a", 0, 50, true), 409)
	want(s, ops("b", 0, 50, true), 201) // b0..b49 in the head
	want(s, ops("b", 0, 50, true), 409)
	// Crash: b is replayed from the WAL.
	s.closed.Store(true)
	close(s.stop)
	<-s.done
	s = openT(t, dir, func(o *Options) { o.MaxAge = -1 })
	want(s, ops("a", 0, 50, true), 409)
	want(s, ops("b", 0, 50, true), 409)
	want(s, ops("c", 0, 50, true), 201)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, func(o *Options) { o.MaxAge = -1 })
	defer s.Close()
	for _, p := range []string{"a", "b", "c"} {
		want(s, ops(p, 0, 50, true), 409)
	}
	if n := docs(t, s); n != 150 {
		t.Fatalf("docs = %d, want 150", n)
	}
	// Retention drops the block holding a: those ids may come again, the
	// others stay duplicates.
	idx := s.indices["logs-a"]
	var first *block
	for _, b := range idx.blocks {
		if first == nil || b.gen < first.gen {
			first = b
		}
	}
	if first == nil || first.n != 50 {
		t.Fatalf("first block %+v", first)
	}
	s.dropBlock(idx, first)
	want(s, ops("a", 0, 50, true), 201)
	want(s, ops("a", 0, 50, true), 409)
	want(s, ops("b", 0, 50, true), 409)
	want(s, ops("c", 0, 50, true), 409)
}
