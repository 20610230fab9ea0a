package store

import (
	"context"
	"fmt"
	"math/rand/v2"
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
		"hash zero":      func(string) uint64 { return 0 },
		// Ids of one length share a hash, and the hashes of lengths 2
		// and 3 share a home slot: probe runs cross.
		"one home slot": func(id string) uint64 { return uint64(len(id)) << 40 },
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

// TestIDTable runs random adds, lookups and deletions against a map, with
// hashes drawn from a small set (long probe runs wrapping around the end
// of the table, the hash 0, deletions inside runs) and from all of uint64.
func TestIDTable(t *testing.T) {
	for _, small := range []bool{true, false} {
		rng := rand.New(rand.NewPCG(1, 2))
		var tab idTable
		ref := map[uint64]uint64{}
		draw := func() uint64 {
			if small {
				// Homes near the end of a 16..1024-slot table, and 0.
				return uint64(rng.IntN(300)) * 1024 * 3 / 4 % 1031
			}
			return rng.Uint64()
		}
		for op := range 200000 {
			h := draw()
			switch rng.IntN(4) {
			case 0, 1:
				slot, found := tab.find(h)
				_, in := ref[h]
				if found != in {
					t.Fatalf("op %d: find(%d) found %v, want %v", op, h, found, in)
				}
				if !found {
					loc := rng.Uint64()
					tab.put(slot, h, loc)
					ref[h] = loc
				} else if tab.locAt(slot) != ref[h] {
					t.Fatalf("op %d: locAt(find(%d)) = %d, want %d", op, h, tab.locAt(slot), ref[h])
				}
			case 2:
				loc, in := ref[h]
				if !in || rng.IntN(4) == 0 {
					loc = rng.Uint64() // not its location: kept
				} else {
					delete(ref, h)
				}
				tab.deleteAt(h, loc)
			case 3:
				loc, ok := tab.get(h)
				if want, in := ref[h]; ok != in || loc != want {
					t.Fatalf("op %d: get(%d) = %d %v, want %d %v", op, h, loc, ok, want, in)
				}
			}
			if op%5000 == 0 {
				n := len(ref)
				if _, z := ref[0]; z {
					n--
				}
				if tab.n != n {
					t.Fatalf("op %d: %d entries, want %d", op, tab.n, n)
				}
				for h, loc := range ref {
					if got, ok := tab.get(h); !ok || got != loc {
						t.Fatalf("op %d: get(%d) = %d %v, want %d", op, h, got, ok, loc)
					}
				}
			}
		}
	}
}

// TestIDTableGrowsIncrementally: the insert that outgrows the table does
// not rehash it; the full table is moved over by the finds that follow, a
// few slots each (every id stays found meanwhile, and deletes and
// re-inserts of unmoved ids land right), and it is empty well before the
// new table could fill.
func TestIDTableGrowsIncrementally(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var tab idTable
	ref := map[uint64]uint64{}
	add := func() {
		h := rng.Uint64() | 1
		slot, found := tab.find(h)
		if found {
			t.Fatalf("find(%d) found an id never added", h)
		}
		tab.put(slot, h, uint64(len(ref)))
		ref[h] = uint64(len(ref))
	}
	for len(tab.ents) < 1<<16 || tab.old != nil {
		add()
	}
	size := len(tab.ents)
	for len(tab.ents) == size {
		add()
	}
	if tab.old == nil || len(tab.old) != size || tab.swept > sweepStep {
		t.Fatalf("after the growing insert: old %d slots, %d swept; want the %d-slot table, at most %d swept", len(tab.old), tab.swept, size, sweepStep)
	}
	// Delete and re-add a few ids still in old.
	moved := 0
	for h, loc := range ref {
		if moved == 50 {
			break
		}
		if probe(tab.old, h) < 0 {
			continue
		}
		tab.deleteAt(h, loc)
		if _, ok := tab.get(h); ok {
			t.Fatalf("get(%d) after its delete still finds it", h)
		}
		slot, found := tab.find(h)
		if found {
			t.Fatalf("find(%d) after its delete found it", h)
		}
		tab.put(slot, h, loc)
		moved++
	}
	// Every id is found while old is still being swept (a delete from old
	// must not cut the probe runs of ids behind it).
	for h, loc := range ref {
		if got, ok := tab.get(h); !ok || got != loc {
			t.Fatalf("mid-sweep: get(%d) = %d %v, want %d", h, got, ok, loc)
		}
	}
	finds := moved
	for tab.old != nil {
		add()
		finds++
		if 4*tab.n > 3*len(tab.ents) {
			t.Fatal("the new table filled before the old one was swept")
		}
	}
	if want := size / sweepStep; finds > want+1 {
		t.Fatalf("old table swept in %d finds, want about %d", finds, want)
	}
	if tab.n != len(ref) {
		t.Fatalf("%d entries, want %d", tab.n, len(ref))
	}
	for h, loc := range ref {
		if got, ok := tab.get(h); !ok || got != loc {
			t.Fatalf("get(%d) = %d %v, want %d", h, got, ok, loc)
		}
	}
}
