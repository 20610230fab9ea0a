package store

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/zstd"
)

// indexCases are queries answered from the token index on blocks and by
// scanning in heads; both must give the same counts (want).
func indexCases() []struct {
	name string
	q    Query
	want int64
} {
	return []struct {
		name string
		q    Query
		want int64
	}{
		{"token", Text{Field: "message", Text: "reset"}, 20},
		{"token upper case", Text{Field: "message", Text: "RESET"}, 20},
		{"token any field", Text{Text: "reset"}, 20},
		{"and tokens", Text{Field: "message", Text: "peer connection"}, 20},
		{"any token", Text{Field: "message", Text: "reset timeout", AnyToken: true}, 40},
		{"phrase", Text{Field: "message", Text: "connection reset", Phrase: true}, 20},
		{"phrase reversed", Text{Field: "message", Text: "reset connection", Phrase: true}, 0},
		{"phrase not adjacent", Text{Field: "message", Text: "connection peer", Phrase: true}, 0},
		// Punctuation between tokens does not matter to a phrase.
		{"phrase across punctuation", Text{Field: "message", Text: "Connection-Reset; by", Phrase: true}, 20},
		{"phrase across path", Text{Field: "message", Text: "api/v1 items", Phrase: true}, 160},
		{"phrase one token", Text{Field: "message", Text: "timeout", Phrase: true}, 20},
		{"dotted token", Text{Field: "message", Text: "v2.1"}, 20},
		{"dotted token part", Text{Field: "message", Text: "v2"}, 0},
		{"keyword exact", Text{Field: "level.keyword", Text: "ERROR"}, 40},
		{"keyword case", Text{Field: "level.keyword", Text: "error"}, 0},
		{"term value", Term{Field: "level", Value: "ERROR"}, 40},
		{"term token", Term{Field: "level", Value: "error"}, 40},
		{"term not analyzed", Term{Field: "message", Value: "Reset"}, 0},
		{"term keyword token", Term{Field: "message.keyword", Value: "reset"}, 0},
		{"term long value", Term{Field: "message", Value: strings.Repeat("x", maxValueKeyLen+1)}, 1},
		{"term number", Term{Field: "n", Value: "7"}, 1},
		{"wildcard", Wildcard{Field: "message", Pattern: "conn*"}, 20},
		{"not phrase", Bool{Must: []Query{Text{Field: "message", Text: "request"}}, MustNot: []Query{Text{Field: "message", Text: "connection reset", Phrase: true}}}, 180},
		{"not term", Bool{MustNot: []Query{Term{Field: "level", Value: "error"}}}, 161},
		{"missing token", Text{Field: "message", Text: "nothere"}, 0},
		{"missing field", Text{Field: "nofield", Text: "reset"}, 0},
		{"timestamp token (not indexed)", Text{Field: "@timestamp", Text: "2026"}, 201},
		{"timestamp value (not indexed)", Term{Field: "@timestamp", Value: "2026-03-01T00:00:05Z"}, 1},
	}
}

// fillIndexDocs stores 201 documents: every tenth "connection reset by
// peer" with level ERROR, every tenth (other) "upstream timeout v2.1",
// the rest "GET /api/v1/items"; one with a message longer than
// maxValueKeyLen.
func fillIndexDocs(t *testing.T, s *Store) {
	t.Helper()
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var ops []Op
	for i := range 200 {
		msg, level := fmt.Sprintf("request %d handled GET /api/v1/items path=/items/%d", i, i), "info"
		switch i % 10 {
		case 0:
			msg, level = fmt.Sprintf("request %d: Connection reset by peer", i), "ERROR"
		case 5:
			msg, level = fmt.Sprintf("request %d upstream timeout v2.1", i), "ERROR"
		}
		src := fmt.Appendf(nil, `{"@timestamp":%q,"level":%q,"message":%q,"n":%d}`, base.Add(time.Duration(i)*time.Second).Format(time.RFC3339Nano), level, msg, i)
		ops = append(ops, Op{Index: fmt.Sprintf("logs-a%d", i%2), ID: fmt.Sprint(i), Create: true, Source: src})
	}
	long := strings.Repeat("x", maxValueKeyLen+1)
	ops = append(ops, Op{Index: "logs-a0", ID: "long", Create: true, Source: fmt.Appendf(nil, `{"@timestamp":%q,"message":%q}`, base.Format(time.RFC3339Nano), long)})
	mustCreate(t, s, ops)
}

// TestTokenIndex checks that queries answered from the blocks' token
// indexes agree with the scanning matcher used on heads.
func TestTokenIndex(t *testing.T) {
	for _, flushed := range []bool{false, true} {
		t.Run(fmt.Sprint("flushed=", flushed), func(t *testing.T) {
			s := openT(t, t.TempDir())
			defer s.Close()
			fillIndexDocs(t, s)
			if flushed {
				if err := s.Flush(); err != nil {
					t.Fatal(err)
				}
				for _, p := range s.snapshot([]string{"logs-*"}) {
					if p.blk == nil || p.blk.meta.IndexVersion != tokIndexVersion {
						t.Fatalf("part %d is not an indexed block", p.gen)
					}
				}
			}
			for _, c := range indexCases() {
				n, err := s.Count(context.Background(), []string{"logs-*"}, c.q)
				if err != nil {
					t.Fatal(err)
				}
				if n != c.want {
					t.Errorf("%s: count = %d, want %d", c.name, n, c.want)
				}
			}
		})
	}
}

// TestPhraseCandidates checks phrases whose tokens (and pairs of tokens)
// all occur in a value but not in sequence.
func TestPhraseCandidates(t *testing.T) {
	s := openT(t, t.TempDir())
	defer s.Close()
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var ops []Op
	for i, msg := range []string{"a b x b c", "a b c", "x a-b-c y", "c b a", "b c a b"} {
		ops = append(ops, Op{Index: "logs-p", ID: fmt.Sprint(i), Create: true, Source: doc(i, base, msg)})
	}
	if _, err := s.Bulk(context.Background(), ops); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		phrase string
		want   int64
	}{{"a b", 4}, {"b c", 4}, {"a b c", 2}, {"c b a", 1}, {"b a", 1}, {"c a", 1}, {"a c", 0}, {"b c a b", 1}, {"x b c", 1}} {
		n, err := s.Count(context.Background(), []string{"logs-p"}, Text{Field: "message", Text: c.phrase, Phrase: true})
		if err != nil {
			t.Fatal(err)
		}
		if n != c.want {
			t.Errorf("%q: count = %d, want %d", c.phrase, n, c.want)
		}
	}
}

func TestTokIndexEncoding(t *testing.T) {
	b := newIndexBuilder()
	long := strings.Repeat("y", maxValueKeyLen+1)
	for row := range 5000 {
		// A token twice in a value is one posting.
		b.add(row, fmt.Appendf(nil, "T%d t%d", row%7, row%7))
		if row == 4000 {
			b.add(row, []byte(long))
		}
	}
	// Many more keys than a version 3 group.
	for row := range 1000 {
		b.add(row, fmt.Appendf(nil, "u%d", row))
	}
	enc, _ := zstd.NewWriter(nil)
	for v, raw := range map[int][]byte{tokIndexVersionWhole: b.encode(), tokIndexVersion: b.encodeGrouped(enc)} {
		decode := decodeTokIndex
		if v == tokIndexVersion {
			decode = decodeGroupedIndex
		}
		x, err := decode(raw)
		if err != nil {
			t.Fatal(v, err)
		}
		if x.n != 7+7+1+2*1000 { // tokens, whole values, "y...", u<row> and its whole value
			t.Fatalf("v%d: keys = %d", v, x.n)
		}
		for _, key := range []uint64{xxhash.Sum64String("t3"), valueKey([]byte("T3 t3"))} {
			rows := newBitset(5000)
			post, err := x.postings(key)
			if err != nil {
				t.Fatal(err)
			}
			if err := rows.addRows(post, 5000); err != nil {
				t.Fatal(err)
			}
			if rows.count() != 714 || !rows.has(3) || !rows.has(4994) || rows.has(4) {
				t.Fatalf("v%d postings: %d rows", v, rows.count())
			}
		}
		for row := range 1000 {
			post, err := x.postings(xxhash.Sum64String(fmt.Sprint("u", row)))
			rows := newBitset(5000)
			if err != nil || rows.addRows(post, 5000) != nil || rows.count() != 1 || !rows.has(row) {
				t.Fatalf("v%d u%d: %v %d rows", v, row, err, rows.count())
			}
		}
		if post, _ := x.postings(valueKey([]byte(long))); post != nil {
			t.Fatal("a long value has a whole-value key")
		}
		for cut := range len(raw) {
			// Truncated: an error or a lookup error, never a panic.
			if y, err := decode(raw[:cut]); err == nil {
				_, _ = y.postings(xxhash.Sum64String("t3"))
			}
		}
	}
	if keys, distinct := b.tokenKeys(); len(keys) != 8+1000 || !distinct {
		t.Fatalf("token keys = %d (distinct %v)", len(keys), distinct)
	}
	if _, err := decodeTokIndex([]byte{5, 1}); err == nil {
		t.Fatal("truncated index decoded")
	}
}

// FuzzGroupedIndex feeds arbitrary version 3 token indexes to the
// decoder and a lookup: errors, never panics.
func FuzzGroupedIndex(f *testing.F) {
	b := newIndexBuilder()
	for row := range 300 {
		b.add(row, fmt.Appendf(nil, "a%d b%d", row%5, row))
	}
	enc, _ := zstd.NewWriter(nil)
	f.Add(b.encodeGrouped(enc), uint64(xxhash.Sum64String("a1")))
	f.Fuzz(func(t *testing.T, raw []byte, key uint64) {
		x, err := decodeGroupedIndex(raw)
		if err != nil {
			return
		}
		post, err := x.postings(key)
		if err == nil {
			_ = newBitset(300).addRows(post, 300)
		}
		if x.n > 0 {
			_, _ = x.postings(binary.LittleEndian.Uint64(x.keys))
		}
	})
}

// TestOpenVersion1 opens a store written before the token index existed
// (testdata/v1: fill(300) then Flush), answers from it by scanning, and
// answers from it and new indexed blocks together.
func TestOpenVersion1(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("testdata/v1")); err != nil {
		t.Fatal(err)
	}
	// CopyFS keeps read-only modes; the store needs to write.
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			mode := os.FileMode(0o600)
			if d.IsDir() {
				mode = 0o700
			}
			_ = os.Chmod(p, mode)
		}
		return nil
	})
	s := openT(t, dir, func(o *Options) { o.MaxAge = -1 })
	defer s.Close()
	parts := s.snapshot([]string{"logs-*"})
	if len(parts) != 3 {
		t.Fatalf("parts = %d, want 3 old blocks", len(parts))
	}
	for _, p := range parts {
		if p.blk == nil || p.blk.meta.IndexVersion != 0 || p.blk.meta.Cols[0].Index != nil {
			t.Fatal("testdata/v1 should hold blocks without token indexes")
		}
	}
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	check := func(old int64) {
		t.Helper()
		for _, c := range []struct {
			name string
			q    Query
			want int64
		}{
			{"all", MatchAll{}, 300},
			{"token", Text{Field: "message", Text: "ERROR"}, 30},
			{"phrase", Text{Field: "message", Text: "disk full", Phrase: true}, 30},
			{"term keyword", Term{Field: "kubernetes.namespace_name.keyword", Value: "ns1"}, 100},
			{"term token", Term{Field: "kubernetes.namespace_name", Value: "ns2"}, 100},
		} {
			n, err := s.Count(context.Background(), []string{"logs-*"}, c.q)
			if err != nil {
				t.Fatal(err)
			}
			if n != c.want*old {
				t.Errorf("%s: count = %d, want %d", c.name, n, c.want*old)
			}
		}
	}
	check(1)
	res, err := s.Search(context.Background(), SearchRequest{Indices: []string{"logs-*"}, Query: Text{Field: "message", Text: "disk full", Phrase: true}, Size: 1, Sort: []SortField{{Field: "@timestamp", Desc: true}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Hits) != 1 || res.Hits[0].ID != "290" || string(res.Hits[0].Source) != string(doc(290, base.Add(290*time.Second), "line 290 disk full error")) {
		t.Fatalf("newest hit %+v", res.Hits)
	}
	// The same documents again (other ids) in new, indexed blocks.
	var ops []Op
	for i := range 300 {
		msg := fmt.Sprintf("line %d level=info", i)
		if i%10 == 0 {
			msg = fmt.Sprintf("line %d disk full error", i)
		}
		ops = append(ops, Op{Index: fmt.Sprintf("logs-kubernetes-ns%d", i%3), ID: fmt.Sprint("new-", i), Create: true, Source: doc(i, base.Add(time.Duration(i)*time.Second), msg)})
	}
	if _, err := s.Bulk(context.Background(), ops); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	check(2)
}

// TestPostingRuns checks the postings kept as runs against a plain list:
// values repeated over stretches of rows (runs), broken and resumed,
// starting at row 0, tokens seen twice in one row, values skipping rows.
func TestPostingRuns(t *testing.T) {
	const n = 20000
	rng := rand.New(rand.NewPCG(1, 2))
	b := newIndexBuilder()
	want := map[uint64][]int{}
	val := "a0 b0"
	for row := range n {
		if rng.IntN(50) == 0 {
			// a new stretch of the same value
			val = fmt.Sprintf("a%d b%d a%d", rng.IntN(5), rng.IntN(3), rng.IntN(5))
		}
		if rng.IntN(7) == 0 {
			continue // this row has no value
		}
		b.add(row, []byte(val))
		seen := map[uint64]bool{valueKey([]byte(val)): true}
		for _, tok := range strings.Fields(val) {
			seen[xxhash.Sum64String(tok)] = true
		}
		for k := range seen {
			want[k] = append(want[k], row)
		}
	}
	enc, _ := zstd.NewWriter(nil)
	x, err := decodeGroupedIndex(b.encodeGrouped(enc))
	if err != nil {
		t.Fatal(err)
	}
	if x.n != len(want) {
		t.Fatalf("keys = %d, want %d", x.n, len(want))
	}
	for k, rows := range want {
		post, err := x.postings(k)
		if err != nil {
			t.Fatal(err)
		}
		got := newBitset(n)
		if err := got.addRows(post, n); err != nil {
			t.Fatal(err)
		}
		if got.count() != len(rows) {
			t.Fatalf("key %x: %d rows, want %d", k, got.count(), len(rows))
		}
		for _, r := range rows {
			if !got.has(r) {
				t.Fatalf("key %x: row %d missing", k, r)
			}
		}
	}
	if b.posts != func() (s int) {
		for _, rows := range want {
			s += len(rows)
		}
		return s
	}() {
		t.Fatalf("posts = %d", b.posts)
	}
	if len(b.runStart) >= b.posts/5 {
		t.Fatalf("%d runs for %d postings: runs are not kept", len(b.runStart), b.posts)
	}
}

// TestSharedTokens checks that tokenizing a value from sharedTokens on
// gives its tokens but those of the shared part, for values that share
// prefixes cut at every kind of byte (separators, '.', digits, non-ASCII).
func TestSharedTokens(t *testing.T) {
	toks := func(v []byte) map[string]bool {
		m := map[string]bool{}
		tokens(v, nil, func(t []byte) { m[string(t)] = true })
		return m
	}
	vals := []string{
		"2026-12-02T17:24:06.123456789Z", "2026-12-02T17:24:06.123456799Z", "2026-12-02T17:24:07.5Z",
		"2026-12-02T17:25:00Z", "2026-12-03T00:00:00.1Z", "a.b.c d", "a.b.x d", "a.bc", "a. b", "é.ü x", "é.ü y",
		"ab", "ab-", "ab-c", "x", "", "12:00", "12:00.5", "12.00.5",
	}
	for _, a := range vals {
		for _, b := range vals {
			v, prev := []byte(b), []byte(a)
			p := sharedTokens(v, prev)
			all, pt := toks(v), toks(prev)
			pre, suf := toks(v[:p]), toks(v[p:])
			// v's tokens are those of its two parts, and the first
			// part's are prev's.
			for tok := range pre {
				if !pt[tok] {
					t.Errorf("prev %q, v %q: shared token %q is not prev's (cut at %d)", a, b, tok, p)
				}
			}
			if len(pre)+len(suf) < len(all) {
				t.Errorf("prev %q, v %q: tokens lost (cut at %d)", a, b, p)
			}
			for tok := range all {
				if !pre[tok] && !suf[tok] {
					t.Errorf("prev %q, v %q: token %q lost (cut at %d)", a, b, tok, p)
				}
			}
			for tok := range suf {
				if !all[tok] {
					t.Errorf("prev %q, v %q: token %q is not v's (cut at %d)", a, b, tok, p)
				}
			}
			for tok := range pre {
				if !all[tok] {
					t.Errorf("prev %q, v %q: token %q is not v's (cut at %d)", a, b, tok, p)
				}
			}
		}
	}
}

// TestKeyOrder: the bucketed key order equals a comparison sort's for
// spread keys of many sizes, for keys that all share their top bits (one
// bucket, sorted by comparison) and for a builder reused with fewer keys.
func TestKeyOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(b *indexBuilder, keys []uint64) {
		t.Helper()
		b.keys = keys
		got := b.keyOrder()
		want := make([]int32, len(keys))
		for i := range want {
			want[i] = int32(i)
		}
		slices.SortFunc(want, func(x, y int32) int { return cmp.Compare(keys[x], keys[y]) })
		if !slices.Equal(got, want) {
			t.Fatalf("%d keys: order differs from a sort's", len(keys))
		}
	}
	b := newIndexBuilder()
	for _, n := range []int{0, 1, 2, 3, 5, 17, 100, 1000, 70000} {
		keys := make([]uint64, n)
		for i := range keys {
			keys[i] = rng.Uint64()
		}
		check(b, keys)
	}
	same := make([]uint64, 5000)
	for i := range same {
		same[i] = 0xabc<<52 | rng.Uint64()>>12
	}
	check(b, same)
	check(b, []uint64{3, 1, 2})
}

// TestShortTokenCache: tokens found through the short-token cache get the
// slot hashing gives them, whatever their length (1 to 8 bytes, which the
// zero padding tells apart: "a" and "a\x00" cannot occur, "ab" vs "a"),
// across colliding cache entries and a reset.
func TestShortTokenCache(t *testing.T) {
	b := newIndexBuilder()
	words := []string{"a", "ab", "abc", "abcdefgh", "abcdefghi", "b", "ba", "info", "warn", "12", "1.2.3", "ünï"}
	for i := range 2000 {
		words = append(words, fmt.Sprintf("w%d", i))
	}
	for round := range 2 {
		want := map[string]int32{}
		for range 3 {
			for _, w := range words {
				got := b.tokSlot([]byte(w))
				s, pos := b.slots.find(b.keys, xxhash.Sum64String(w))
				if s < 0 {
					t.Fatalf("round %d: %q has no slot in the table (pos %d)", round, w, pos)
				}
				if got != s || !b.isTok[s] {
					t.Fatalf("round %d: %q: slot %d from the cache, %d by its hash (token %v)", round, w, got, s, b.isTok[s])
				}
				if prev, ok := want[w]; ok && prev != got {
					t.Fatalf("round %d: %q moved from slot %d to %d", round, w, prev, got)
				}
				want[w] = got
			}
		}
		if len(b.keys) != len(words) {
			t.Fatalf("round %d: %d keys for %d distinct words", round, len(b.keys), len(words))
		}
		b.reset()
	}
}
