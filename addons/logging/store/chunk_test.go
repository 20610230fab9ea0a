package store

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// TestChunkedCandidates checks that phrases answered by reading only the
// chunks of candidate rows return exactly the right documents, with the
// right sources, across chunk boundaries and in a sparse column, the
// same before (head) and after (chunked block) sealing.
func TestChunkedCandidates(t *testing.T) {
	s := openT(t, t.TempDir(), func(o *Options) { o.MaxAge = -1 })
	defer s.Close()
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	const n = 5000
	want := map[string]bool{}
	var ops []Op
	for i := range n {
		var src []byte
		ts := base.Add(time.Duration(i) * time.Second)
		switch {
		case i%13 == 5:
			// No message: the column is sparse.
			src = fmt.Appendf(nil, `{"@timestamp":%q,"other":"connection reset %d"}`, ts.Format(time.RFC3339Nano), i)
		case slices.Contains([]int{0, 31, 32, 33, 63, 64, 127, 128, 1000, 4095, 4096, n - 1}, i) || i%211 == 7:
			src = doc(i, ts, fmt.Sprintf("row %d connection reset by peer", i))
			want[fmt.Sprint(i)] = true
		case i%3 == 0:
			// Both tokens, wrong order or apart: candidates that must fail.
			src = doc(i, ts, fmt.Sprintf("row %d reset connection", i))
		case i%3 == 1:
			src = doc(i, ts, fmt.Sprintf("row %d connection was reset", i))
		default:
			src = doc(i, ts, fmt.Sprintf("row %d handled GET /items/%d lorem ipsum dolor sit amet consectetur", i, i))
		}
		ops = append(ops, Op{Index: "logs-c", ID: fmt.Sprint(i), Create: true, Source: src})
	}
	mustCreate(t, s, ops)
	check := func(stage string) {
		t.Helper()
		for _, q := range []Query{
			Text{Field: "message", Text: "connection reset", Phrase: true},
			Text{Text: "connection reset by", Phrase: true},
		} {
			res, err := s.Search(context.Background(), SearchRequest{Indices: []string{"logs-c"}, Query: q, Size: 10000, TrackTotalHits: -1, Sort: []SortField{{Field: "@timestamp", Desc: true}}})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]bool{}
			for _, h := range res.Hits {
				got[h.ID] = true
				var i int
				fmt.Sscan(h.ID, &i)
				if !bytes.Equal(h.Source, doc(i, base.Add(time.Duration(i)*time.Second), fmt.Sprintf("row %d connection reset by peer", i))) {
					t.Fatalf("%s: hit %s has source %s", stage, h.ID, h.Source)
				}
			}
			if len(got) != len(want) || res.Total != int64(len(want)) {
				t.Fatalf("%s %+v: %d hits (total %d), want %d", stage, q, len(got), res.Total, len(want))
			}
			for id := range want {
				if !got[id] {
					t.Fatalf("%s: missing hit %s", stage, id)
				}
			}
		}
		// A time range inside the block: only its rows.
		res, err := s.Search(context.Background(), SearchRequest{Indices: []string{"logs-c"}, Size: 100, Sort: []SortField{{Field: "@timestamp"}},
			Query: Bool{Must: []Query{Text{Field: "message", Text: "connection reset", Phrase: true}}, Filter: []Query{Range{Field: "@timestamp",
				GTE: base.Add(32 * time.Second).Format(time.RFC3339), LT: base.Add(128 * time.Second).Format(time.RFC3339)}}}})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(ids(res.Hits), ","); got != "32,33,63,64,127" {
			t.Fatalf("%s: range hits %s", stage, got)
		}
		// The sparse field, by token and phrase.
		if c, err := s.Count(context.Background(), []string{"logs-c"}, Text{Field: "other", Text: "connection reset", Phrase: true}); err != nil || c != int64((n+7)/13) {
			t.Fatalf("%s: sparse count %d %v", stage, c, err)
		}
	}
	check("head")
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	parts := s.snapshot([]string{"logs-c"})
	if len(parts) != 1 || parts[0].blk == nil {
		t.Fatalf("parts %d", len(parts))
	}
	for _, c := range parts[0].blk.meta.Cols {
		if c.Chunk == 0 || c.Chunk&(c.Chunk-1) != 0 {
			t.Fatalf("column %s: chunk %d", c.name, c.Chunk)
		}
	}
	if c := parts[0].blk.meta.Cols[parts[0].blk.names["message"][0]].Chunk; c > 64 {
		t.Fatalf("message chunk = %d rows", c)
	}
	check("block")
	// Cold (no decode cache) after a restart.
	s.Close()
	s = openT(t, s.opts.Dir, func(o *Options) { o.MaxAge = -1; o.CacheBytes = -1 })
	check("reopened")
}

// TestOpenFormat1Indexed opens blocks written before chunked columns
// (SKLOGBK1 with token indexes, testdata/xv2, written by the store of
// commit 6bf0152): they are read as they are, and new blocks beside them
// are chunked.
func TestOpenFormat1Indexed(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("testdata/xv2")); err != nil {
		t.Fatal(err)
	}
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
		if p.blk == nil || p.blk.meta.IndexVersion != tokIndexVersionWhole || p.blk.meta.Cols[1].Chunk != 0 {
			t.Fatal("testdata/xv2 should hold format 1 blocks with token indexes")
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
			{"wildcard", Wildcard{Field: "message", Pattern: "*full*"}, 30},
			{"term keyword", Term{Field: "kubernetes.namespace_name.keyword", Value: "ns1"}, 100},
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
	var ops []Op
	for i := range 300 {
		msg := fmt.Sprintf("line %d level=info", i)
		if i%10 == 0 {
			msg = fmt.Sprintf("line %d disk full error", i)
		}
		ops = append(ops, Op{Index: fmt.Sprintf("logs-kubernetes-ns%d", i%3), ID: fmt.Sprint("new-", i), Create: true, Source: doc(i, base.Add(time.Duration(i)*time.Second), msg)})
	}
	mustCreate(t, s, ops)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	chunked := 0
	for _, p := range s.snapshot([]string{"logs-*"}) {
		if p.blk.meta.Cols[1].Chunk > 0 {
			chunked++
		}
	}
	if chunked != 3 {
		t.Fatalf("chunked new blocks = %d", chunked)
	}
	check(2)
}

// chunkedSection writes values (nil: absent) of n rows as a chunked column
// section, as writeBlock does, and returns it with its rows per chunk.
func chunkedSection(values [][]byte, n int, enc *zstd.Encoder) ([]byte, int) {
	size, count, last := 0, 0, -1
	for i, v := range values {
		if v != nil {
			size += uvarintLen(uint64(i-last)) + uvarintLen(uint64(len(v))<<2) + len(v)
			count++
			last = i
		}
	}
	var w chunkWriter
	w.init(chunkRows(size, count), n)
	for i, v := range values {
		if v != nil {
			w.add(i, kindString, v, enc)
		}
	}
	var out bytes.Buffer
	w.finish(&out, enc)
	return out.Bytes(), w.rows
}

func TestChunkedRoundTrip(t *testing.T) {
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderCRC(false))
	for _, n := range []int{0, 1, 31, 32, 33, 100, 1000} {
		values := make([][]byte, n)
		for i := range values {
			if i%5 != 3 && !(i >= 40 && i < 80) { // a gap of whole chunks
				values[i] = fmt.Appendf(nil, "value %d %s", i, strings.Repeat("x", i%50))
			}
		}
		sec, r := chunkedSection(values, n, enc)
		c, err := parseChunked(sec, n, r)
		if err != nil {
			t.Fatal(n, err)
		}
		for i := range n {
			cd, err := c.chunk(i/r, n)
			if err != nil {
				t.Fatal(err)
			}
			k, v := cd.get(i % r)
			if (values[i] == nil) != (k == kindAbsent) || !bytes.Equal(v, values[i]) {
				t.Fatalf("n=%d row %d: %d %q, want %q", n, i, k, v, values[i])
			}
		}
	}
}

// FuzzChunkedColumn feeds arbitrary sections to the chunked column
// decoder: it returns errors, never panics, and every row it decodes
// lies inside its chunk.
func FuzzChunkedColumn(f *testing.F) {
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderCRC(false))
	for _, n := range []int{1, 40, 100} {
		values := make([][]byte, n)
		for i := range values {
			if i%3 != 0 {
				values[i] = fmt.Appendf(nil, "v%d", i)
			}
		}
		sec, r := chunkedSection(values, n, enc)
		f.Add(sec, uint16(n), uint8(r))
	}
	f.Add([]byte{}, uint16(0), uint8(32))
	f.Fuzz(func(t *testing.T, sec []byte, n16 uint16, r8 uint8) {
		n, r := int(n16), int(r8)
		c, err := parseChunked(sec, n, r)
		if err != nil {
			return
		}
		for k := range c.ends {
			cd, err := c.chunk(k, n)
			if err != nil {
				continue
			}
			for i := range cd.kind {
				if k, v := cd.get(i); k != kindAbsent && len(v) > len(cd.data) {
					t.Fatal("value outside the chunk")
				}
			}
		}
	})
}
