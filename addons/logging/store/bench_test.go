package store

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkBulk measures store.Bulk (flatten, id check, head, WAL group
// commit with fsync) for 100-byte log lines in batches of 1000.
func BenchmarkBulk(b *testing.B) {
	b.Run("fsync", func(b *testing.B) { benchBulk(b, false, 1) })
	b.Run("nosync", func(b *testing.B) { benchBulk(b, true, 1) })
	// Runs of 100 documents to an index, as a shipper's requests hold
	// runs of lines from each file.
	b.Run("nosync-runs", func(b *testing.B) { benchBulk(b, true, 100) })
}

// benchBulk sends 1000-document requests, to 10 indices in turn every run
// documents.
func benchBulk(b *testing.B, noSync bool, run int) {
	s, err := Open(Options{Dir: b.TempDir(), MaxAge: -1, NoSync: noSync})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	base := time.Now()
	const batch = 1000
	ops := make([]Op, batch)
	b.SetBytes(0)
	b.ReportAllocs()
	n := 0
	cpu := startCPU()
	for b.Loop() {
		for j := range ops {
			msg := fmt.Sprintf("%s info request id=%d handled GET /api/v1/items path=/items/%d lorem ipsum dolor sit amet", base.Format("15:04:05.000"), n, n%1000)
			ops[j] = Op{Index: "logs-kubernetes-ns-" + strconv.Itoa(n/run%10), ID: strconv.Itoa(n), Create: true, Source: doc(n, base.Add(time.Duration(n)*time.Millisecond), msg)}
			n++
		}
		if _, err := s.Bulk(context.Background(), ops); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "docs/s")
	cpu.report(b)
}

// cpuClock measures the process's CPU time (user + system, all threads:
// GC and the WAL's writes included) over a benchmark loop; on a shared
// machine it varies less than the wall time.
type cpuClock struct{ start time.Duration }

func processCPU() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU() cpuClock { return cpuClock{processCPU()} }

// report adds cpu-ns/op (call it right after the loop).
func (c cpuClock) report(b *testing.B) {
	b.ReportMetric(float64(processCPU()-c.start)/float64(b.N), "cpu-ns/op")
}

// benchCorpus stores n 100-byte-line documents over 10 indices (every 97th
// says "connection reset by peer") and seals them into blocks.
// benchCacheBytes is the decode cache of benchmark stores (-1: none, to
// measure cold searches).
var benchCacheBytes = 0

func benchCorpus(b *testing.B, n int) *Store {
	b.Helper()
	s, err := Open(Options{Dir: b.TempDir(), MaxAge: -1, NoSync: true, CacheBytes: benchCacheBytes})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	ops := make([]Op, 0, 1000)
	for i := 0; i < n; i++ {
		what := fmt.Sprintf("handled GET /api/v1/items path=/items/%d", i%1000)
		if i%97 == 0 {
			what = "connection reset by peer"
		}
		msg := fmt.Sprintf("12:00:%02d.%03d info request id=%d %s lorem ipsum", i%60, i%1000, i, what)
		ops = append(ops, Op{Index: "logs-kubernetes-ns-" + strconv.Itoa(i%10), ID: strconv.Itoa(i), Create: true, Source: doc(i, base.Add(time.Duration(i)*time.Millisecond), msg)})
		if len(ops) == cap(ops) || i == n-1 {
			if _, err := s.Bulk(context.Background(), ops); err != nil {
				b.Fatal(err)
			}
			ops = ops[:0]
		}
	}
	if err := s.Flush(); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkSearch measures searches over 300,000 sealed documents: a
// phrase in 1 line of 97 (sorted, size 10, counting to 10,000 as
// Elasticsearch's default), the same counted exactly, and a rare token.
func BenchmarkSearch(b *testing.B) {
	s := benchCorpus(b, 300000)
	sortDesc := []SortField{{Field: "@timestamp", Desc: true}}
	for _, c := range []struct {
		name string
		req  SearchRequest
	}{
		{"phrase", SearchRequest{Indices: []string{"logs-*"}, Query: Text{Text: "connection reset", Phrase: true}, Size: 10, Sort: sortDesc}},
		{"phrase-exact-count", SearchRequest{Indices: []string{"logs-*"}, Query: Text{Text: "connection reset", Phrase: true}, TrackTotalHits: -1}},
		{"rare-token", SearchRequest{Indices: []string{"logs-*"}, Query: Text{Field: "message", Text: "123457"}, Size: 10, Sort: sortDesc}},
		{"term-and-token", SearchRequest{Indices: []string{"logs-*"}, Query: Bool{Must: []Query{Term{Field: "kubernetes.namespace_name", Value: "ns1"}, Text{Field: "message", Text: "reset"}}}, TrackTotalHits: -1}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := s.Search(context.Background(), c.req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSearchCold is BenchmarkSearch without the decode cache: every
// search decodes what it reads.
func BenchmarkSearchCold(b *testing.B) {
	benchCacheBytes = -1
	defer func() { benchCacheBytes = 0 }()
	BenchmarkSearch(b)
}

// BenchmarkSearchDir searches a store already on disk (SKIFF_BENCH_STORE,
// such as a corpus kept by skiff-bench logs-store --search-dir) with the
// bench's phrase query over its three 6 h windows (0, 12 h, 6 h into the day), so
// a large corpus can be profiled without loading it each time. Skipped
// without the variable. SKIFF_BENCH_CACHE_MIB sets the decode cache in
// MiB (negative: none, every query cold; unset: the default).
func BenchmarkSearchDir(b *testing.B) {
	dir := os.Getenv("SKIFF_BENCH_STORE")
	if dir == "" {
		b.Skip("SKIFF_BENCH_STORE not set")
	}
	cache := 0
	if v := os.Getenv("SKIFF_BENCH_CACHE_MIB"); v != "" {
		mib, err := strconv.Atoi(v)
		if err != nil {
			b.Fatalf("SKIFF_BENCH_CACHE_MIB: %v", err)
		}
		cache = mib << 20
		if mib < 0 {
			cache = -1
		}
	}
	s, err := Open(Options{Dir: dir, MaxAge: -1, NoSync: true, CacheBytes: cache})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var lo, hi int64 = 1<<63 - 1, -1 << 63
	for _, p := range s.snapshot([]string{"logs-*"}) {
		lo, hi = min(lo, p.minTS), max(hi, p.maxTS)
	}
	w := int64(6 * time.Hour)
	r := 0
	for b.Loop() {
		// skiff-bench's windows: 0, 12 h, 6 h into a day's corpus.
		from := lo + int64(r*7919%max(1, int((hi-lo)/w)))*w
		r++
		q := Bool{Must: []Query{Text{Text: "connection reset", Phrase: true}}, Filter: []Query{Range{Field: "@timestamp",
			GTE: time.Unix(0, from).UTC().Format(time.RFC3339Nano), LT: time.Unix(0, from+w).UTC().Format(time.RFC3339Nano)}}}
		if _, err := s.Search(context.Background(), SearchRequest{Indices: []string{"logs-*"}, Query: q, Size: 10, Sort: []SortField{{Field: "@timestamp", Desc: true}}}); err != nil {
			b.Fatal(err)
		}
	}
}

// shipperDoc is a document as the shipper sends it for a 100-byte line of
// container c: the full Kubernetes metadata block, the same for every line
// of the container.
func shipperDoc(c, i int, ts time.Time) []byte {
	msg := fmt.Sprintf("%s info request id=%d handled GET /api/v1/items path=/items/%d lorem ipsum dolor sit amet", ts.Format("15:04:05.000"), i, i%1000)
	return fmt.Appendf(nil, `{"@timestamp":%q,"stream":"stdout","message":%q,"kubernetes":{"namespace_name":"bench","pod_name":"web-%d","pod_id":"0b5e3c1a-9d7f-4e2b-8a6c-%012d","container_name":"app","container_image":"registry.local/web:1.2.3","host":"node-1","labels":{"app":"web","pod-template-hash":"5d8f7c9b6d","app.kubernetes.io/name":"web"}}}`,
		ts.UTC().Format(time.RFC3339Nano), msg, c, c)
}

// BenchmarkWriteBlockShipper measures sealing a head of 100,000 shipper documents
// from 4 containers (runs of 250 lines each, as bulk requests bring them)
// into a block file: columns, token indexes, blooms, compression.
func BenchmarkWriteBlockShipper(b *testing.B) {
	const n = 100000
	h := newHead(1, nil)
	var fl flattener
	base := time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC)
	now := func() time.Time { return base }
	for i := range n {
		if err := fl.flatten(shipperDoc(i/250%4, i, base.Add(time.Duration(i)*time.Millisecond))); err != nil {
			b.Fatal(err)
		}
		h.add(fmt.Sprintf("%032x", i*7919), fl.fields, now)
	}
	dir := b.TempDir()
	var sb sealBuffers // as a store keeps them from seal to seal
	b.ReportAllocs()
	for b.Loop() {
		blk, err := writeBlock(dir, h, false, &sb)
		if err != nil {
			b.Fatal(err)
		}
		blk.release()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "docs/s")
	b.ReportMetric(float64(largestFile(b, dir))/float64(n), "blockB/doc")
}

// BenchmarkHeadAdd fills a fresh head with 100,000 flattened documents
// (the memo's shipper-like corpus), as one index's head grows between
// seals: the arena, the document list's growth and the columns.
func BenchmarkHeadAdd(b *testing.B) {
	const n = 100000
	fl := &flattener{}
	type flat struct {
		id     string
		fields []field
	}
	docs := make([]flat, 1000)
	for i := range docs {
		src := doc(i, time.Date(2026, 3, 1, 0, 0, i, 0, time.UTC), fmt.Sprintf("info request id=%d handled GET /api/v1/items path=/items/%d lorem ipsum dolor sit amet", i, i))
		if err := fl.flatten(src); err != nil {
			b.Fatal(err)
		}
		fs := make([]field, len(fl.fields))
		for j, f := range fl.fields {
			fs[j] = field{path: bytes.Clone(f.path), value: bytes.Clone(f.value), kind: f.kind}
		}
		docs[i] = flat{fmt.Sprintf("%032x", i), fs}
	}
	b.ReportAllocs()
	cpu := startCPU()
	for b.Loop() {
		h := newHead(1, nil)
		for i := range n {
			d := &docs[i%len(docs)]
			h.add(d.id, d.fields, time.Now)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/doc")
	cpu.report(b)
}

// BenchmarkIDSet adds 1,000,000 new shipper-like ids (32 hex digits) to an
// index's id set as insert does (check, then add), the set growing from
// empty: the duplicate check of every create.
func BenchmarkIDSet(b *testing.B) {
	const n = 1000000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%016x%016x", uint64(i)*0x9e3779b97f4a7c15, i)
	}
	b.ReportAllocs()
	cpu := startCPU()
	for b.Loop() {
		idx := &index{ids: newIDSet(), head: newHead(1, nil)}
		for i, id := range ids {
			h := idHash(id)
			if idx.hasID(id, h) {
				b.Fatal("duplicate")
			}
			idx.addID(id, h, idLoc(1, i))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/id")
	cpu.report(b)
}

// largestFile is the size of the largest file in dir (a block written).
func largestFile(tb testing.TB, dir string) int64 {
	ents, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	var n int64
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Size() > n {
			n = fi.Size()
		}
	}
	return n
}

// BenchmarkIDTableAhead: new ids into a table of millions, each found and
// put, with and without touching the slots of the id idsAhead later first
// (as BulkAppend does).
func BenchmarkIDTableAhead(b *testing.B) {
	const n = 2000000
	hs := make([]uint64, n)
	for i := range hs {
		hs[i] = idHash(fmt.Sprintf("%016x", uint64(i)*0x9e3779b97f4a7c15))
	}
	for _, ahead := range []bool{false, true} {
		b.Run(fmt.Sprintf("ahead=%v", ahead), func(b *testing.B) {
			for b.Loop() {
				var t idTable
				for i, h := range hs {
					if ahead && i+idsAhead < n {
						t.touch(hs[i+idsAhead])
					}
					if j, found := t.find(h); !found {
						t.put(j, h, uint64(i))
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/id")
		})
	}
}
