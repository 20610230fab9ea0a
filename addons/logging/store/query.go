package store

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// Query is a compiled search condition. Field names are dotted
// (kubernetes.labels.app); "" or "*" means every field, a name with '*' is
// a pattern, and a ".keyword" suffix asks for exact whole-value matching
// as Elasticsearch's keyword sub-field does.
type Query interface{ isQuery() }

// MatchAll matches every document.
type MatchAll struct{}

// MatchNone matches nothing.
type MatchNone struct{}

// Text matches analyzed text (match, match_phrase, query_string terms):
// the text's tokens must all occur in one value of the field (AnyToken:
// one of them), in order and adjacent for a Phrase.
type Text struct {
	Field    string
	Text     string
	Phrase   bool
	AnyToken bool
}

// Term matches a value equal to Value, or a token of a text value equal
// to it (term/terms queries).
type Term struct {
	Field string
	Value string
}

// Wildcard matches a whole value, or a lower-cased token of it, against a
// pattern with '*' and '?'.
type Wildcard struct {
	Field   string
	Pattern string
}

// Range bounds a field's values: numbers compare numerically, @timestamp
// (and values that parse as times when the bounds do) as times, others as
// strings. Empty bounds are open.
type Range struct {
	Field            string
	GT, GTE, LT, LTE string
}

// Exists matches documents that have the field.
type Exists struct{ Field string }

// IDs matches documents by _id.
type IDs struct{ Values []string }

// Bool combines queries as Elasticsearch's bool query: every Must and
// Filter, none of MustNot, and at least MinimumShouldMatch of Should
// (default 1 when there is no Must or Filter, else 0).
type Bool struct {
	Must, Filter, Should, MustNot []Query
	MinimumShouldMatch            int
}

func (MatchAll) isQuery()  {}
func (MatchNone) isQuery() {}
func (Text) isQuery()      {}
func (Term) isQuery()      {}
func (Wildcard) isQuery()  {}
func (Range) isQuery()     {}
func (Exists) isQuery()    {}
func (IDs) isQuery()       {}
func (Bool) isQuery()      {}

func (b Bool) minShould() int {
	if b.MinimumShouldMatch > 0 {
		return b.MinimumShouldMatch
	}
	if len(b.Must) == 0 && len(b.Filter) == 0 && len(b.Should) > 0 {
		return 1
	}
	return 0
}

// fieldSpec is a resolved field name.
type fieldSpec struct {
	name  string
	exact bool
}

func parseField(f string) fieldSpec {
	if f == "" {
		f = "*"
	}
	if n, ok := strings.CutSuffix(f, ".keyword"); ok {
		return fieldSpec{name: n, exact: true}
	}
	return fieldSpec{name: f}
}

// FieldMatches tells whether a query's field (a name, a name ending in
// .keyword, a pattern with '*' and '?', or "" for every field) addresses
// the document field name.
func FieldMatches(queryField, name string) bool {
	f := parseField(queryField).name
	return f == name || (strings.ContainsAny(f, "*?") && wildcardMatch(f, name))
}

func tokenHashes(s string) []uint64 {
	var out []uint64
	tokens([]byte(s), nil, func(t []byte) { out = append(out, xxhash.Sum64(t)) })
	return out
}

// matcher tells whether document i of a part matches.
type matcher func(i int) bool

// scanAllRows (tests) makes searches work as before candidate rows: no
// token index, every row of a part given to the matcher, time ranges
// checked row by row.
var scanAllRows bool

// compile binds q to part p. cand, when not nil, holds every row that can
// match (a superset: the matcher still decides), from the token index, so
// the caller need not call the matcher on other rows; nil means any row
// may match. cand may be shared with the matcher: read it, never change it.
func compile(q Query, p *part) (m matcher, cand bitset, err error) {
	switch q := q.(type) {
	case Text:
		return compileText(q, p)
	case Term:
		return compileTerm(q, p)
	case Bool:
		return compileBool(q, p)
	case *Bool:
		return compileBool(*q, p)
	}
	m, err = compileScan(q, p)
	return m, nil, err
}

// compileScan binds the queries that the token index does not answer.
func compileScan(q Query, p *part) (matcher, error) {
	switch q := q.(type) {
	case nil, MatchAll, *MatchAll:
		return func(int) bool { return true }, nil
	case MatchNone, *MatchNone:
		return func(int) bool { return false }, nil
	case Wildcard:
		return compileWildcard(q, p)
	case Range:
		return compileRange(q, p)
	case Exists:
		cols := p.columns(parseField(q.Field).name)
		return func(i int) bool {
			for _, c := range cols {
				if k, _ := p.value(c, i); k != kindAbsent {
					return true
				}
			}
			return false
		}, nil
	case IDs:
		set := map[string]bool{}
		for _, v := range q.Values {
			set[v] = true
		}
		if err := p.loadIDs(); err != nil {
			return nil, err
		}
		return func(i int) bool { return set[p.id(i)] }, nil
	}
	return func(int) bool { return false }, nil
}

// compileBool binds a bool query; its candidates are the intersection of
// its required clauses' candidates or, without required clauses, the
// union of its should clauses' when each has some.
func compileBool(q Bool, p *part) (matcher, bitset, error) {
	var must, not, should []matcher
	var cand bitset
	owned := false // cand is a copy of our own
	// Cheap conditions first: time ranges, then terms, then text scans.
	required := append(append([]Query{}, q.Filter...), q.Must...)
	sort.SliceStable(required, func(i, j int) bool { return queryCost(required[i]) < queryCost(required[j]) })
	for _, sub := range required {
		m, c, err := compile(sub, p)
		if err != nil {
			return nil, nil, err
		}
		must = append(must, m)
		switch {
		case c == nil:
		case cand == nil:
			cand = c
		case !owned:
			cand = append(bitset(nil), cand...)
			owned = true
			fallthrough
		default:
			cand.and(c)
		}
	}
	for _, sub := range q.MustNot {
		m, _, err := compile(sub, p)
		if err != nil {
			return nil, nil, err
		}
		not = append(not, m)
	}
	minShould := q.minShould()
	var shouldCand bitset
	allShouldCand := len(required) == 0 && minShould > 0
	for _, sub := range q.Should {
		m, c, err := compile(sub, p)
		if err != nil {
			return nil, nil, err
		}
		should = append(should, m)
		switch {
		case !allShouldCand:
		case c == nil:
			allShouldCand, shouldCand = false, nil
		case shouldCand == nil:
			shouldCand = append(bitset(nil), c...)
		default:
			shouldCand.or(c)
		}
	}
	if allShouldCand && shouldCand != nil {
		cand = shouldCand
	}
	return func(i int) bool {
		for _, m := range must {
			if !m(i) {
				return false
			}
		}
		for _, m := range not {
			if m(i) {
				return false
			}
		}
		if minShould > 0 {
			n := 0
			for _, m := range should {
				if m(i) {
					n++
					if n >= minShould {
						return true
					}
				}
			}
			return false
		}
		return true
	}, cand, nil
}

// anyValue calls ok for each value of the columns in doc i.
func anyValue(p *part, cols []int, i int, ok func(kind uint8, v []byte) bool) bool {
	for _, c := range cols {
		if k, v := p.value(c, i); k != kindAbsent && ok(k, v) {
			return true
		}
	}
	return false
}

// queryCost orders required clauses: cheaper ones run first.
func queryCost(q Query) int {
	switch q := q.(type) {
	case Range:
		if parseField(q.Field).name == "@timestamp" {
			return 0
		}
		return 2
	case Term, Exists, IDs:
		return 1
	case Text:
		if parseField(q.Field).name != "*" {
			return 2
		}
	}
	return 3
}

// bloomCols keeps the block columns whose bloom filter may hold every
// (or, anyTok, any) token.
func bloomCols(p *part, cols []int, qh []uint64, anyTok bool) []int {
	if p.blk == nil || len(qh) == 0 {
		return cols
	}
	var out []int
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
			out = append(out, c)
		}
	}
	return out
}

// indexRows answers from the blocks' token indexes which rows hold, in
// one of cols, every key (all) or any key; ok is false when a column has
// no index (blocks written before it existed) or it could not be read.
func indexRows(p *part, cols []int, keys []uint64, all bool) (rows bitset, ok bool) {
	if p.blk == nil || len(keys) == 0 {
		return nil, false
	}
	xs := make([]*tokIndex, len(cols))
	for j, c := range cols {
		x, err := p.blk.tokIndex(c)
		if err != nil {
			p.loadErr = err
			return nil, false
		}
		if x == nil {
			return nil, false
		}
		xs[j] = x
	}
	rows = newBitset(p.n)
	var tmp bitset
	for _, x := range xs {
		var colRows bitset
		if all {
			// Rarest key first; stop at an absent one.
			posts := make([][]byte, len(keys))
			for k, key := range keys {
				var err error
				if posts[k], err = x.postings(key); err != nil {
					p.loadErr = fmt.Errorf("%s: %w", p.blk.path, err)
					return nil, false
				}
				if posts[k] == nil {
					posts = nil
					break
				}
			}
			if posts == nil {
				continue
			}
			sort.Slice(posts, func(a, b int) bool { return len(posts[a]) < len(posts[b]) })
			colRows = newBitset(p.n)
			if err := colRows.addRows(posts[0], p.n); err != nil {
				p.loadErr = err
				return nil, false
			}
			for _, post := range posts[1:] {
				if tmp == nil {
					tmp = newBitset(p.n)
				} else {
					clear(tmp)
				}
				if err := tmp.addRows(post, p.n); err != nil {
					p.loadErr = err
					return nil, false
				}
				colRows.and(tmp)
			}
			rows.or(colRows)
			continue
		}
		for _, key := range keys {
			post, err := x.postings(key)
			if err != nil {
				p.loadErr = fmt.Errorf("%s: %w", p.blk.path, err)
				return nil, false
			}
			if err := rows.addRows(post, p.n); err != nil {
				p.loadErr = err
				return nil, false
			}
		}
	}
	return rows, true
}

func compileText(q Text, p *part) (matcher, bitset, error) {
	fs := parseField(q.Field)
	cols := p.columns(fs.name)
	if !fs.exact {
		cols = bloomCols(p, cols, tokenHashes(q.Text), q.AnyToken)
	}
	if p.blk != nil && !scanAllRows {
		var keys []uint64
		if !fs.exact {
			keys = tokenHashes(q.Text)
		} else if len(q.Text) <= maxValueKeyLen {
			keys = []uint64{valueKey([]byte(q.Text))}
		}
		if rows, ok := indexRows(p, cols, keys, fs.exact || !q.AnyToken); ok {
			if !q.Phrase || fs.exact || len(keys) == 1 {
				return rows.has, rows, nil
			}
			// A phrase: the index gives the rows with every token;
			// only those are checked for order and adjacency.
			scan := scanText(q, fs, p, cols)
			return func(i int) bool { return rows.has(i) && scan(i) }, rows, nil
		}
	}
	return scanText(q, fs, p, cols), nil, nil
}

// scanText matches by reading and tokenizing the values.
func scanText(q Text, fs fieldSpec, p *part, cols []int) matcher {
	if fs.exact {
		want := []byte(q.Text)
		return func(i int) bool {
			return anyValue(p, cols, i, func(_ uint8, v []byte) bool { return bytes.Equal(v, want) })
		}
	}
	qh := tokenHashes(q.Text)
	if len(qh) == 0 {
		return func(int) bool { return false }
	}
	var hs []uint64
	var tb []byte
	return func(i int) bool {
		return anyValue(p, cols, i, func(_ uint8, v []byte) bool {
			hs = hs[:0]
			tb = tokens(v, tb, func(t []byte) { hs = append(hs, xxhash.Sum64(t)) })
			return textMatch(hs, qh, q.Phrase, q.AnyToken)
		})
	}
}

func textMatch(hs, qh []uint64, phrase, anyTok bool) bool {
	switch {
	case phrase:
		for s := 0; s+len(qh) <= len(hs); s++ {
			ok := true
			for j, h := range qh {
				if hs[s+j] != h {
					ok = false
					break
				}
			}
			if ok {
				return true
			}
		}
		return false
	case anyTok:
		for _, h := range qh {
			for _, x := range hs {
				if x == h {
					return true
				}
			}
		}
		return false
	default:
		for _, h := range qh {
			found := false
			for _, x := range hs {
				if x == h {
					found = true
					break
				}
			}
			if !found {
				return false
			}
		}
		return true
	}
}

func compileTerm(q Term, p *part) (matcher, bitset, error) {
	fs := parseField(q.Field)
	if fs.name == "_id" {
		return compile(IDs{Values: []string{q.Value}}, p)
	}
	if fs.name == "_index" {
		ok := p.idx.name == q.Value
		return func(int) bool { return ok }, nil, nil
	}
	cols := bloomCols(p, p.columns(fs.name), tokenHashes(q.Value), false)
	want := []byte(q.Value)
	th := xxhash.Sum64(want)
	if len(want) <= maxValueKeyLen && !scanAllRows {
		// Equal values, or (not .keyword) a token equal to the value.
		if rows, ok := indexRows(p, cols, []uint64{valueKey(want)}, true); ok {
			if !fs.exact {
				if tr, ok := indexRows(p, cols, []uint64{th}, true); ok {
					rows.or(tr)
				} else {
					rows = nil
				}
			}
			if rows != nil {
				return rows.has, rows, nil
			}
		}
	}
	var tb []byte
	return func(i int) bool {
		return anyValue(p, cols, i, func(_ uint8, v []byte) bool {
			if bytes.Equal(v, want) {
				return true
			}
			if fs.exact {
				return false
			}
			found := false
			tb = tokens(v, tb, func(t []byte) {
				if !found && xxhash.Sum64(t) == th {
					found = true
				}
			})
			return found
		})
	}, nil, nil
}

func compileWildcard(q Wildcard, p *part) (matcher, error) {
	fs := parseField(q.Field)
	cols := p.columns(fs.name)
	pat := q.Pattern
	lower := strings.ToLower(pat)
	var tb []byte
	return func(i int) bool {
		return anyValue(p, cols, i, func(_ uint8, v []byte) bool {
			if wildcardMatch(pat, string(v)) {
				return true
			}
			if fs.exact {
				return false
			}
			found := false
			tb = tokens(v, tb, func(t []byte) {
				if !found && wildcardMatch(lower, string(t)) {
					found = true
				}
			})
			return found
		})
	}, nil
}

// bound is one side of a range.
type bound struct {
	set  bool
	incl bool
	num  float64
	isN  bool
	ts   int64
	isT  bool
	str  string
}

func mkBound(s string, incl bool) bound {
	if s == "" {
		return bound{}
	}
	b := bound{set: true, incl: incl, str: s}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		b.num, b.isN = f, true
	}
	if t, ok := ParseTimeString(s); ok {
		b.ts, b.isT = t, true
	}
	return b
}

func (q Range) bounds() (lo, hi bound) {
	lo = mkBound(q.GTE, true)
	if q.GT != "" {
		lo = mkBound(q.GT, false)
	}
	hi = mkBound(q.LTE, true)
	if q.LT != "" {
		hi = mkBound(q.LT, false)
	}
	return lo, hi
}

// timeBounds returns the range as [lo, hi] nanoseconds for time fields.
func (q Range) timeBounds() (lo, hi int64, ok bool) {
	l, h := q.bounds()
	lo, hi = -1<<63, 1<<63-1
	if l.set {
		if !l.isT {
			return 0, 0, false
		}
		lo = l.ts
		if !l.incl {
			lo++
		}
	}
	if h.set {
		if !h.isT {
			return 0, 0, false
		}
		hi = h.ts
		if !h.incl {
			hi--
		}
	}
	return lo, hi, true
}

func compileRange(q Range, p *part) (matcher, error) {
	fs := parseField(q.Field)
	if fs.name == "@timestamp" {
		lo, hi, ok := q.timeBounds()
		if !ok {
			return func(int) bool { return false }, nil
		}
		if p.blk != nil && !scanAllRows {
			// A block wholly inside or outside the range is answered
			// from its bounds, without decoding its timestamps.
			if p.minTS >= lo && p.maxTS <= hi {
				return func(int) bool { return true }, nil
			}
			if p.maxTS < lo || p.minTS > hi {
				return func(int) bool { return false }, nil
			}
		}
		if err := p.loadTS(); err != nil {
			return nil, err
		}
		return func(i int) bool { t := p.ts(i); return t >= lo && t <= hi }, nil
	}
	lo, hi := q.bounds()
	cols := p.columns(fs.name)
	return func(i int) bool {
		return anyValue(p, cols, i, func(kind uint8, v []byte) bool {
			return inBound(lo, v, true) && inBound(hi, v, false)
		})
	}, nil
}

func inBound(b bound, v []byte, lower bool) bool {
	if !b.set {
		return true
	}
	var c int
	switch {
	case b.isN:
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil {
			return false
		}
		switch {
		case f < b.num:
			c = -1
		case f > b.num:
			c = 1
		}
	case b.isT:
		t, ok := ParseTimeString(string(v))
		if !ok {
			return false
		}
		switch {
		case t < b.ts:
			c = -1
		case t > b.ts:
			c = 1
		}
	default:
		c = strings.Compare(string(v), b.str)
	}
	if lower {
		return c > 0 || (c == 0 && b.incl)
	}
	return c < 0 || (c == 0 && b.incl)
}

// mayMatch tells from a block's metadata alone whether q can match any of
// its documents (time bounds and token bloom filters).
func mayMatch(q Query, p *part) bool {
	switch q := q.(type) {
	case MatchNone, *MatchNone:
		return false
	case Text:
		fs := parseField(q.Field)
		qh := tokenHashes(q.Text)
		if fs.exact || len(qh) == 0 {
			return !fs.exact || len(p.columns(fs.name)) > 0
		}
		return p.bloomAny(fs.name, qh, q.AnyToken)
	case Term:
		fs := parseField(q.Field)
		if fs.name == "_id" || fs.name == "_index" {
			return true
		}
		qh := tokenHashes(q.Value)
		if len(qh) == 0 {
			return len(p.columns(fs.name)) > 0
		}
		return p.bloomAny(fs.name, qh, false)
	case Wildcard:
		return len(p.columns(parseField(q.Field).name)) > 0
	case Exists:
		return len(p.columns(parseField(q.Field).name)) > 0
	case Range:
		fs := parseField(q.Field)
		if fs.name == "@timestamp" {
			lo, hi, ok := q.timeBounds()
			return ok && p.maxTS >= lo && p.minTS <= hi
		}
		return len(p.columns(fs.name)) > 0
	case Bool:
		for _, s := range q.Must {
			if !mayMatch(s, p) {
				return false
			}
		}
		for _, s := range q.Filter {
			if !mayMatch(s, p) {
				return false
			}
		}
		if q.minShould() > 0 {
			n := 0
			for _, s := range q.Should {
				if mayMatch(s, p) {
					n++
				}
			}
			return n >= q.minShould()
		}
		return true
	case *Bool:
		return mayMatch(*q, p)
	}
	return true
}

// timeWindow narrows [lo, hi] by the query's required @timestamp ranges.
func timeWindow(q Query) (lo, hi int64) {
	lo, hi = -1<<63, 1<<63-1
	var walk func(q Query)
	walk = func(q Query) {
		switch q := q.(type) {
		case Range:
			if parseField(q.Field).name == "@timestamp" {
				if l, h, ok := q.timeBounds(); ok {
					lo, hi = max(lo, l), min(hi, h)
				}
			}
		case Bool:
			for _, s := range q.Must {
				walk(s)
			}
			for _, s := range q.Filter {
				walk(s)
			}
		case *Bool:
			walk(*q)
		}
	}
	walk(q)
	return lo, hi
}
