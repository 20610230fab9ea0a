package store

import (
	"container/heap"
	"context"
	"encoding/json"
	"math/bits"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// part is one searchable piece of an index: a block or a head snapshot.
type part struct {
	idx   *index
	gen   uint64
	n     int
	minTS int64
	maxTS int64

	blk *block
	// head snapshot (a reference to h)
	h     *head
	hdocs docList
	hcols []string

	mu      sync.Mutex
	names   map[string][]int // dotted name -> columns (head)
	tsv     []int64
	idv     *idList
	colv    map[int]*colData
	chunkv  map[int][]*colData // chunked columns: decoded chunks
	loadErr error
}

func (p *part) colNames() []string {
	if p.blk != nil {
		out := make([]string, len(p.blk.meta.Cols))
		for i, c := range p.blk.meta.Cols {
			out[i] = c.name
		}
		return out
	}
	out := make([]string, len(p.hcols))
	for i, c := range p.hcols {
		out[i] = dotted(c)
	}
	return out
}

// columns resolves a dotted field name or pattern to column numbers.
func (p *part) columns(name string) []int {
	if p.blk != nil && !strings.ContainsAny(name, "*?") {
		return p.blk.names[name]
	}
	if p.names == nil {
		p.names = map[string][]int{}
	}
	if cols, ok := p.names[name]; ok {
		return cols
	}
	var cols []int
	for i, n := range p.colNames() {
		if n == name || (strings.ContainsAny(name, "*?") && wildcardMatch(name, n)) {
			cols = append(cols, i)
		}
	}
	p.names[name] = cols
	return cols
}

func (p *part) bloomAny(field string, qh []uint64, anyTok bool) bool {
	cols := p.columns(field)
	if p.blk == nil {
		return len(cols) > 0
	}
	for _, c := range cols {
		b := p.blk.meta.Cols[c].Bloom
		ok := !anyTok
		for _, h := range qh {
			has := b.has(h)
			if anyTok && has {
				ok = true
				break
			}
			if !anyTok && !has {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func (p *part) value(c, i int) (uint8, []byte) {
	if p.blk != nil && p.blk.meta.Cols[c].Chunk > 0 {
		// Chunked column: decode only the chunk holding row i.
		r := p.blk.meta.Cols[c].Chunk
		chs := p.chunkv[c]
		if chs == nil {
			if p.chunkv == nil {
				p.chunkv = map[int][]*colData{}
			}
			chs = make([]*colData, (p.n+r-1)/r)
			p.chunkv[c] = chs
		}
		k := i / r
		cd := chs[k]
		if cd == nil {
			var err error
			cd, err = p.blk.columnChunk(c, k)
			if err != nil {
				p.loadErr = err
				m := min(r, p.n-k*r)
				cd = &colData{off: make([]uint32, m), ln: make([]uint32, m), kind: make([]uint8, m)}
			}
			chs[k] = cd
		}
		return cd.get(i - k*r)
	}
	if p.blk != nil {
		cd := p.colv[c]
		if cd == nil {
			var err error
			cd, err = p.blk.column(c)
			if err != nil {
				p.loadErr = err
				cd = &colData{off: make([]uint32, p.n), ln: make([]uint32, p.n), kind: make([]uint8, p.n)}
			}
			if p.colv == nil {
				p.colv = map[int]*colData{}
			}
			p.colv[c] = cd
		}
		return cd.get(i)
	}
	var kind uint8
	var val []byte
	eachField(p.hdocs.at(i).enc, func(col uint32, k uint8, v []byte) bool {
		if int(col) == c {
			kind, val = k, v
			return false
		}
		return true
	})
	return kind, val
}

func (p *part) loadTS() error {
	if p.tsv != nil || p.blk == nil {
		return nil
	}
	ts, err := p.blk.timestamps()
	if err != nil {
		return err
	}
	p.tsv = ts
	return nil
}

func (p *part) ts(i int) int64 {
	if p.blk == nil {
		return p.hdocs.at(i).ts
	}
	return p.tsv[i]
}

func (p *part) loadIDs() error {
	if p.idv != nil || p.blk == nil {
		return nil
	}
	ids, err := p.blk.ids()
	if err != nil {
		return err
	}
	p.idv = ids
	return nil
}

func (p *part) id(i int) string {
	if p.blk == nil {
		return p.hdocs.at(i).id
	}
	return p.idv.get(i)
}

// source rebuilds document i's JSON with the client's nesting.
func (p *part) source(i int) []byte {
	type fv struct {
		path []string
		kind uint8
		v    []byte
	}
	var fs []fv
	if p.blk != nil {
		for c := range p.blk.meta.Cols {
			if k, v := p.value(c, i); k != kindAbsent {
				fs = append(fs, fv{strings.Split(p.blk.meta.Cols[c].Path, string(pathSep)), k, v})
			}
		}
	} else {
		eachField(p.hdocs.at(i).enc, func(col uint32, k uint8, v []byte) bool {
			fs = append(fs, fv{strings.Split(p.hcols[col], string(pathSep)), k, v})
			return true
		})
	}
	type node struct {
		key  string
		kids []*node
		kind uint8
		v    []byte
	}
	root := &node{}
	for _, f := range fs {
		n := root
		for d, seg := range f.path {
			leaf := d == len(f.path)-1
			var next *node
			if !leaf {
				for _, k := range n.kids {
					if k.key == seg && k.kind == 0 {
						next = k
						break
					}
				}
			}
			if next == nil {
				next = &node{key: seg}
				n.kids = append(n.kids, next)
			}
			if leaf {
				next.kind, next.v = f.kind, f.v
			}
			n = next
		}
	}
	var out []byte
	var emit func(n *node)
	emit = func(n *node) {
		out = append(out, '{')
		for j, k := range n.kids {
			if j > 0 {
				out = append(out, ',')
			}
			out = appendJSONStr(out, k.key)
			out = append(out, ':')
			switch k.kind {
			case kindString:
				out = appendJSONStr(out, string(k.v))
			case kindRaw:
				out = append(out, k.v...)
			default:
				emit(k)
			}
		}
		out = append(out, '}')
	}
	emit(root)
	return out
}

func appendJSONStr(out []byte, s string) []byte {
	out = append(out, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < 0x80 {
			out = append(out, c)
			i++
			continue
		}
		if c < 0x80 {
			switch c {
			case '"':
				out = append(out, '\\', '"')
			case '\\':
				out = append(out, '\\', '\\')
			case '\n':
				out = append(out, '\\', 'n')
			case '\r':
				out = append(out, '\\', 'r')
			case '\t':
				out = append(out, '\\', 't')
			default:
				out = append(out, `\u00`...)
				out = append(out, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&15])
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			out = append(out, `\ufffd`...)
		} else {
			out = append(out, s[i:i+n]...)
		}
		i += n
	}
	return append(out, '"')
}

// SortField orders hits: "@timestamp" (millisecond values, as a date
// field), "_doc" (insertion order) or "_score" (all scores are 1).
type SortField struct {
	Field string
	Desc  bool
}

// SearchRequest is a search over indices.
type SearchRequest struct {
	Indices []string
	Query   Query
	From    int
	Size    int
	Sort    []SortField
	// SearchAfter holds the sort values of the last hit of the previous
	// page, one per Sort field.
	SearchAfter []int64
	// TrackTotalHits counts matches exactly up to this many (0 = 10,000
	// as Elasticsearch; negative = always exactly).
	TrackTotalHits int
	Aggs           []AggRequest
}

// Hit is one returned document.
type Hit struct {
	Index  string
	ID     string
	TS     int64
	Source json.RawMessage
	Sort   []int64
}

// SearchResult is the outcome of a search.
type SearchResult struct {
	Total      int64
	TotalExact bool
	Hits       []Hit
	Aggs       []AggResult
}

type hitRef struct {
	p    *part
	i    int
	keys []int64
}

// hitHeap keeps the best hits with the worst on top.
type hitHeap struct {
	refs []hitRef
	desc []bool
}

func compareKeys(a, b []int64, desc []bool) int {
	for j := range a {
		if a[j] == b[j] {
			continue
		}
		less := a[j] < b[j]
		if j < len(desc) && desc[j] {
			less = !less
		}
		if less {
			return -1
		}
		return 1
	}
	return 0
}

func (h *hitHeap) Len() int           { return len(h.refs) }
func (h *hitHeap) Less(i, j int) bool { return compareKeys(h.refs[i].keys, h.refs[j].keys, h.desc) > 0 }
func (h *hitHeap) Swap(i, j int)      { h.refs[i], h.refs[j] = h.refs[j], h.refs[i] }
func (h *hitHeap) Push(x any)         { h.refs = append(h.refs, x.(hitRef)) }
func (h *hitHeap) Pop() any {
	x := h.refs[len(h.refs)-1]
	h.refs = h.refs[:len(h.refs)-1]
	return x
}

// releaseParts gives back the blocks and heads a snapshot holds; no part
// may be read after.
func releaseParts(parts []*part) {
	for _, p := range parts {
		if p.blk != nil {
			p.blk.release()
		}
		if p.h != nil {
			p.h.release()
		}
	}
}

// afterSnapshot, when set (tests), runs after a search took its snapshot.
var afterSnapshot func()

// snapshot returns the searchable parts of the matching indices, holding
// a reference to each block's mapping and to each head (whose memory goes
// to the next heads once its block is written): release them with
// releaseParts.
func (s *Store) snapshot(patterns []string) []*part {
	var parts []*part
	for _, idx := range s.match(patterns) {
		idx.mu.Lock()
		for _, b := range idx.blocks {
			if !b.acquire() {
				continue
			}
			parts = append(parts, &part{idx: idx, gen: b.gen, n: b.n, minTS: b.minTS, maxTS: b.maxTS, blk: b})
		}
		hs := append(append([]*head{}, idx.sealed...), idx.head)
		for _, h := range hs {
			if h.docs.len() == 0 {
				continue
			}
			h.acquire()
			parts = append(parts, &part{idx: idx, gen: h.gen, n: h.docs.len(), minTS: h.minTS, maxTS: h.maxTS, h: h, hdocs: h.docs.snapshot(), hcols: h.cols[:len(h.cols):len(h.cols)]})
		}
		idx.mu.Unlock()
	}
	return parts
}

// Search runs a search. Unknown index patterns match nothing.
func (s *Store) Search(ctx context.Context, req SearchRequest) (*SearchResult, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	parts := s.snapshot(req.Indices)
	defer releaseParts(parts)
	if afterSnapshot != nil {
		afterSnapshot()
	}
	q := req.Query
	if q == nil {
		q = MatchAll{}
	}
	sortBy := req.Sort
	desc := make([]bool, 0, len(sortBy)+1)
	needTS := false
	for _, f := range sortBy {
		desc = append(desc, f.Desc)
		if f.Field == "@timestamp" {
			needTS = true
		}
	}
	// Ties break by _doc, ascending.
	desc = append(desc, false)
	track := req.TrackTotalHits
	if track == 0 {
		track = 10000
	}
	want := req.From + req.Size
	// Early termination: sorted by time with no aggregations, visit
	// parts newest (or oldest) first and stop once the page is full, the
	// count reached the tracking limit and no later part can beat it.
	byTime := len(sortBy) > 0 && sortBy[0].Field == "@timestamp" && len(req.Aggs) == 0 && track > 0
	if byTime {
		if sortBy[0].Desc {
			sort.SliceStable(parts, func(i, j int) bool { return parts[i].maxTS > parts[j].maxTS })
		} else {
			sort.SliceStable(parts, func(i, j int) bool { return parts[i].minTS < parts[j].minTS })
		}
	}
	lo, hi := timeWindow(q)
	aggs := newAggregators(req.Aggs)
	hh := &hitHeap{desc: desc}
	var total int64
	stopped := false
	inRange := make([]*part, 0, len(parts))
	for _, p := range parts {
		if p.maxTS >= lo && p.minTS <= hi {
			inRange = append(inRange, p)
		}
	}
	// canStop tells whether no document of p (or of any part after it)
	// can enter the page any more.
	canStop := func(p *part) bool {
		if !byTime || hh.Len() < want || total < int64(track) {
			return false
		}
		if want == 0 {
			// Counted far enough, and no page to fill.
			return true
		}
		worst := hh.refs[0].keys[0]
		if sortBy[0].Desc {
			return p.maxTS/1e6 < worst
		}
		return p.minTS/1e6 > worst
	}
	// onlyCount tells whether p's matches can no longer enter the page
	// (it is full with hits newer, or older, than all of p), so they are
	// only counted: no sort keys, hence no timestamps (the page only
	// gets better, so once true for p it stays true).
	onlyCount := func(p *part) bool {
		if !byTime || want == 0 || req.SearchAfter != nil || hh.Len() < want || scanAllRows {
			return false
		}
		worst := hh.refs[0].keys[0]
		if sortBy[0].Desc {
			return floorDiv(p.maxTS, 1e6) < worst
		}
		return floorDiv(p.minTS, 1e6) > worst
	}
	keysNeeded := want > 0 || req.SearchAfter != nil
	// Parts are matched in parallel, a window of them at a time, and
	// merged in order.
	window := max(1, runtime.GOMAXPROCS(0))
	matched := make([][]int32, window)
	errs := make([]error, window)
	for w := 0; w < len(inRange) && !stopped; w += window {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		batch := inRange[w:min(w+window, len(inRange))]
		if canStop(batch[0]) {
			stopped = true
			break
		}
		var wg sync.WaitGroup
		for j, p := range batch {
			loadTS := (needTS && keysNeeded && !onlyCount(p)) || len(aggs) > 0
			wg.Add(1)
			go func() {
				defer wg.Done()
				matched[j], errs[j] = matchPart(q, p, loadTS)
			}()
		}
		wg.Wait()
		for j, p := range batch {
			if errs[j] != nil {
				return nil, errs[j]
			}
			if canStop(p) {
				stopped = true
				break
			}
			if onlyCount(p) {
				total += int64(len(matched[j]))
				if p.loadErr != nil {
					return nil, p.loadErr
				}
				continue
			}
			if needTS && keysNeeded && len(matched[j]) > 0 {
				// Loaded by matchPart unless p looked only counted then.
				if err := p.loadTS(); err != nil {
					return nil, err
				}
			}
			for _, row := range matched[j] {
				i := int(row)
				var keys []int64
				if keysNeeded {
					keys = make([]int64, 0, len(sortBy)+1)
					for _, f := range sortBy {
						switch f.Field {
						case "@timestamp":
							keys = append(keys, floorDiv(p.ts(i), 1e6))
						case "_doc":
							keys = append(keys, int64(p.gen)<<32|int64(i))
						default:
							keys = append(keys, 0)
						}
					}
					keys = append(keys, int64(p.gen)<<32|int64(i))
					if req.SearchAfter != nil && compareKeys(keys[:min(len(req.SearchAfter), len(keys))], req.SearchAfter[:min(len(req.SearchAfter), len(keys))], desc) <= 0 {
						continue
					}
				}
				total++
				for _, a := range aggs {
					a.collect(p, i)
				}
				if want == 0 {
					continue
				}
				if hh.Len() < want {
					heap.Push(hh, hitRef{p, i, keys})
				} else if compareKeys(keys, hh.refs[0].keys, desc) < 0 {
					hh.refs[0] = hitRef{p, i, keys}
					heap.Fix(hh, 0)
				}
			}
			if p.loadErr != nil {
				return nil, p.loadErr
			}
		}
	}
	res := &SearchResult{Total: total, TotalExact: !stopped && (track < 0 || total <= int64(track))}
	if !res.TotalExact && track > 0 && total > int64(track) {
		res.Total = int64(track)
	}
	refs := hh.refs
	sort.Slice(refs, func(i, j int) bool { return compareKeys(refs[i].keys, refs[j].keys, desc) < 0 })
	if req.From < len(refs) {
		refs = refs[req.From:]
	} else {
		refs = nil
	}
	for _, r := range refs {
		if err := r.p.loadIDs(); err != nil {
			return nil, err
		}
		if err := r.p.loadTS(); err != nil {
			return nil, err
		}
		h := Hit{Index: r.p.idx.name, ID: r.p.id(r.i), TS: r.p.ts(r.i), Source: r.p.source(r.i)}
		if len(sortBy) > 0 {
			h.Sort = r.keys[:len(sortBy)]
		}
		res.Hits = append(res.Hits, h)
		if r.p.loadErr != nil {
			return nil, r.p.loadErr
		}
	}
	for _, a := range aggs {
		res.Aggs = append(res.Aggs, a.result())
	}
	return res, nil
}

// matchPart returns the rows of p that match q, ascending; with needTS
// the part's timestamps are loaded too when a row matches.
func matchPart(q Query, p *part, needTS bool) ([]int32, error) {
	if p.blk != nil && !mayMatch(q, p) {
		return nil, nil
	}
	m, cand, err := compile(q, p)
	if err != nil {
		return nil, err
	}
	var rows []int32
	if cand != nil && !scanAllRows {
		// Only the rows the token index names can match.
		for w, word := range cand {
			for word != 0 {
				i := w<<6 | bits.TrailingZeros64(word)
				word &= word - 1
				if i >= p.n {
					break
				}
				if m(i) {
					rows = append(rows, int32(i))
				}
			}
		}
	} else {
		for i := 0; i < p.n; i++ {
			if m(i) {
				rows = append(rows, int32(i))
			}
		}
	}
	if p.loadErr != nil {
		return nil, p.loadErr
	}
	if needTS && len(rows) > 0 {
		if err := p.loadTS(); err != nil {
			return nil, err
		}
	}
	return rows, nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// Count counts the matching documents exactly.
func (s *Store) Count(ctx context.Context, indices []string, q Query) (int64, error) {
	res, err := s.Search(ctx, SearchRequest{Indices: indices, Query: q, TrackTotalHits: -1})
	if err != nil {
		return 0, err
	}
	return res.Total, nil
}

// AggRequest is one aggregation (date_histogram or terms), with optional
// sub-aggregations per bucket.
type AggRequest struct {
	Name          string
	DateHistogram *DateHistogram
	Terms         *TermsAgg
	Aggs          []AggRequest
}

// DateHistogram buckets documents by time.
type DateHistogram struct {
	Field string
	// Fixed is fixed_interval; Calendar is calendar_interval (minute,
	// hour, day, week, month, quarter, year or 1m, 1h, 1d, 1w, 1M, 1q, 1y).
	Fixed    time.Duration
	Calendar string
	// Location is the time_zone buckets are rounded in (nil: UTC): a day
	// starts at its midnight, a fixed interval counts from its zero hour
	// (+05:30 makes hourly buckets start at half past, UTC).
	Location *time.Location
	// MinDocCount (Elasticsearch's default 0 fills empty buckets between
	// the first and last, and across ExtendedBounds).
	MinDocCount    int64
	ExtendedBounds *[2]int64 // ns
}

// TermsAgg counts the most frequent values of a field.
type TermsAgg struct {
	Field       string
	Size        int
	MinDocCount int64
}

// AggResult is one aggregation's buckets.
type AggResult struct {
	Name     string
	Date     bool
	Location *time.Location // a date histogram's time_zone (nil: UTC)
	Buckets  []Bucket
	SumOther int64
}

// Bucket is one bucket: Key (ms) for dates, KeyString for terms (with
// KeyRaw set when the value was a JSON number or literal).
type Bucket struct {
	Key       int64
	KeyString string
	KeyRaw    bool
	Count     int64
	Aggs      []AggResult
}

type aggregator interface {
	collect(p *part, i int)
	result() AggResult
}

func newAggregators(reqs []AggRequest) []aggregator {
	var out []aggregator
	for _, r := range reqs {
		switch {
		case r.DateHistogram != nil:
			out = append(out, &dateAgg{req: r, buckets: map[int64]*aggBucket{}})
		case r.Terms != nil:
			out = append(out, &termsAgg{req: r, buckets: map[string]*aggBucket{}})
		}
	}
	return out
}

type aggBucket struct {
	count int64
	raw   bool
	sub   []aggregator
}

type dateAgg struct {
	req     AggRequest
	buckets map[int64]*aggBucket
}

func (a *dateAgg) key(ts int64) int64 {
	d := a.req.DateHistogram
	loc := d.Location
	if d.Fixed > 0 {
		if loc == nil {
			return floorDiv(ts, int64(d.Fixed)) * int64(d.Fixed)
		}
		// Rounded in local time: the local clock's reading as if it were
		// UTC, floored, and that wall time found again in the zone.
		_, off := time.Unix(0, ts).In(loc).Zone()
		offset := int64(off) * int64(time.Second)
		floor := floorDiv(ts+offset, int64(d.Fixed)) * int64(d.Fixed)
		w := time.Unix(0, floor).UTC()
		k := time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), w.Nanosecond(), loc).UnixNano()
		if k > ts {
			// A clock change between the bucket's start and ts: the
			// offset of ts applies.
			k = floor - offset
		}
		return k
	}
	if loc == nil {
		loc = time.UTC
	}
	t := time.Unix(0, ts).In(loc)
	switch d.Calendar {
	case "second", "1s":
		t = t.Truncate(time.Second)
	case "minute", "1m":
		t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), 0, 0, loc)
	case "hour", "1h":
		t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), 0, 0, 0, loc)
	case "week", "1w":
		t = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
		wd := (int(t.Weekday()) + 6) % 7 // Monday first
		t = time.Date(t.Year(), t.Month(), t.Day()-wd, 0, 0, 0, 0, loc)
	case "month", "1M":
		t = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, loc)
	case "quarter", "1q":
		t = time.Date(t.Year(), ((t.Month()-1)/3)*3+1, 1, 0, 0, 0, 0, loc)
	case "year", "1y":
		t = time.Date(t.Year(), 1, 1, 0, 0, 0, 0, loc)
	default: // day
		t = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
	}
	if k := t.UnixNano(); k <= ts {
		return k
	}
	// A local midnight or hour that a clock change skipped: the bucket
	// starts where the day (hour) does.
	return t.Add(-time.Hour).UnixNano()
}

// next is the key of the bucket after k's. In a zone with clock changes
// buckets are not equally long, and a repeated wall time falls in the
// bucket of its first occurrence (time.Date's choice): next is what key
// gives one period on, or two where that is still k's bucket.
func (a *dateAgg) next(k int64) int64 {
	d := a.req.DateHistogram
	loc := d.Location
	if loc == nil {
		loc = time.UTC
	}
	t := time.Unix(0, k).In(loc)
	on := func(n int) int64 {
		if d.Fixed > 0 {
			return k + int64(n)*int64(d.Fixed)
		}
		switch d.Calendar {
		case "second", "1s":
			return k + int64(n)*int64(time.Second)
		case "minute", "1m":
			return k + int64(n)*int64(time.Minute)
		case "hour", "1h":
			return k + int64(n)*int64(time.Hour)
		case "week", "1w":
			return t.AddDate(0, 0, 7*n).UnixNano()
		case "month", "1M":
			return t.AddDate(0, n, 0).UnixNano()
		case "quarter", "1q":
			return t.AddDate(0, 3*n, 0).UnixNano()
		case "year", "1y":
			return t.AddDate(n, 0, 0).UnixNano()
		}
		return t.AddDate(0, 0, n).UnixNano()
	}
	if d.Location == nil {
		return on(1) // UTC: every period starts where the last ended
	}
	n := a.key(on(1))
	if n <= k {
		n = a.key(on(2))
	}
	return max(n, k+1)
}

func (a *dateAgg) collect(p *part, i int) {
	var ts int64
	f := a.req.DateHistogram.Field
	if f == "" || f == "@timestamp" {
		ts = p.ts(i)
	} else {
		found := false
		for _, c := range p.columns(f) {
			if k, v := p.value(c, i); k != kindAbsent {
				if t, ok := parseTime(k, v); ok {
					ts, found = t, true
					break
				}
			}
		}
		if !found {
			return
		}
	}
	k := a.key(ts)
	b := a.buckets[k]
	if b == nil {
		b = &aggBucket{sub: newAggregators(a.req.Aggs)}
		a.buckets[k] = b
	}
	b.count++
	for _, s := range b.sub {
		s.collect(p, i)
	}
}

func (a *dateAgg) result() AggResult {
	d := a.req.DateHistogram
	res := AggResult{Name: a.req.Name, Date: true, Location: d.Location}
	keys := make([]int64, 0, len(a.buckets))
	for k := range a.buckets {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	if d.MinDocCount == 0 && (len(keys) > 0 || d.ExtendedBounds != nil) {
		var first, last int64
		if len(keys) > 0 {
			first, last = keys[0], keys[len(keys)-1]
		} else {
			first, last = a.key(d.ExtendedBounds[0]), a.key(d.ExtendedBounds[1])
		}
		if eb := d.ExtendedBounds; eb != nil {
			first = min(first, a.key(eb[0]))
			last = max(last, a.key(eb[1]))
		}
		filled := keys[:0:0]
		for k := first; k <= last && len(filled) < 100000; k = a.next(k) {
			filled = append(filled, k)
		}
		keys = filled
	}
	for _, k := range keys {
		b := a.buckets[k]
		bk := Bucket{Key: k / 1e6}
		if b != nil {
			if b.count < d.MinDocCount {
				continue
			}
			bk.Count = b.count
			for _, s := range b.sub {
				bk.Aggs = append(bk.Aggs, s.result())
			}
		} else {
			for _, s := range newAggregators(a.req.Aggs) {
				bk.Aggs = append(bk.Aggs, s.result())
			}
		}
		res.Buckets = append(res.Buckets, bk)
	}
	return res
}

type termsAgg struct {
	req     AggRequest
	buckets map[string]*aggBucket
	// other counts documents left out of merged results' buckets
	// (their sum_other_doc_count; see Merge).
	other int64
}

func (a *termsAgg) collect(p *part, i int) {
	f := parseField(a.req.Terms.Field)
	var key []byte
	var kind uint8
	switch f.name {
	case "_index":
		key, kind = []byte(p.idx.name), kindString
	default:
		for _, c := range p.columns(f.name) {
			if k, v := p.value(c, i); k != kindAbsent {
				key, kind = v, k
				break
			}
		}
		if kind == kindAbsent {
			return
		}
	}
	b := a.buckets[string(key)]
	if b == nil {
		b = &aggBucket{raw: kind == kindRaw, sub: newAggregators(a.req.Aggs)}
		a.buckets[string(key)] = b
	}
	b.count++
	for _, s := range b.sub {
		s.collect(p, i)
	}
}

func (a *termsAgg) result() AggResult {
	t := a.req.Terms
	size := t.Size
	if size <= 0 {
		size = 10
	}
	minCount := t.MinDocCount
	if minCount <= 0 {
		minCount = 1
	}
	type kv struct {
		k string
		b *aggBucket
	}
	all := make([]kv, 0, len(a.buckets))
	for k, b := range a.buckets {
		if b.count >= minCount {
			all = append(all, kv{k, b})
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].b.count != all[j].b.count {
			return all[i].b.count > all[j].b.count
		}
		return all[i].k < all[j].k
	})
	res := AggResult{Name: a.req.Name, SumOther: a.other}
	for j, e := range all {
		if j >= size {
			res.SumOther += e.b.count
			continue
		}
		bk := Bucket{KeyString: e.k, KeyRaw: e.b.raw, Count: e.b.count}
		for _, s := range e.b.sub {
			bk.Aggs = append(bk.Aggs, s.result())
		}
		res.Buckets = append(res.Buckets, bk)
	}
	return res
}

var _ = strconv.Itoa
