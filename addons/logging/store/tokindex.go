package store

import (
	"cmp"
	"encoding/binary"
	"errors"
	"math/bits"
	"slices"
	"sort"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/zstd"
)

// A token index (one per column of a block, format version 2) maps keys to
// the rows holding them. Keys are the xxhash of each lower-cased token of a
// value (the same hashes the bloom filters and the scanning matcher use)
// and, for values up to maxValueKeyLen bytes, a hash of the whole value
// (valueKey). Encoding, zstd-compressed as one section, laid out to be
// searched in place:
//
//	uvarint(number of keys n)
//	n keys, ascending, 8 bytes little-endian each
//	n uint32 little-endian: where each key's postings end
//	per key, in the same order: its rows as uvarint(row - previous row),
//	the first relative to -1.
//
// Blocks written before the index existed have no such section; queries
// on them scan the column as before.

// tokIndexVersion is recorded in block metadata (version 1, a
// development format parsed before use, is not read; version 2 is the
// layout above, one zstd section, still read).
//
// Version 3 (written since chunked columns, format 2 blocks) keeps the
// same keys and postings but is not compressed as a whole, so a lookup
// decompresses only the postings of the keys it needs (whole-section
// decompression was a fifth of a phrase search's CPU at 10 M lines; the
// keys are hashes and do not compress anyway):
//
//	uvarint(number of keys n)
//	n keys, ascending, 8 bytes little-endian each (uncompressed)
//	g = ceil(n / indexGroupKeys) uint32 little-endian: where each group's
//	frame ends (after this table)
//	g zstd frames, one per group of indexGroupKeys keys: per key
//	uvarint(length of its postings), then the postings of the keys in
//	order (encoded as above)
const tokIndexVersion = 3 // blocks with another version than 2 or 3 are scanned

// tokIndexVersionWhole is version 2, one zstd section.
const tokIndexVersionWhole = 2

// indexGroupKeys is the keys per postings frame of version 3.
const indexGroupKeys = 128

// maxValueKeyLen bounds the values whose whole-value hash is indexed;
// exact matches of longer values scan the column.
const maxValueKeyLen = 64

// valueKey hashes a whole value apart from token hashes (tokens never
// contain 0xff, valid UTF-8 never does).
func valueKey(v []byte) uint64 {
	var d xxhash.Digest
	d.Reset()
	_, _ = d.Write([]byte{0xff})
	_, _ = d.Write(v)
	return d.Sum64()
}

// indexBuilder collects one column's token index and bloom filter keys
// while a block is written. Postings are chained per key in flat arrays
// (no per-key allocation), and the keys of short values seen before are
// remembered, so low-cardinality columns (namespace, level, labels) are
// tokenized once per distinct value.
type indexBuilder struct {
	slots   slotTable // key -> slot
	keys    []uint64  // per slot
	isTok   []bool    // per slot: a token (else a whole-value key)
	cnt     []int32   // per slot: its postings
	lastRow []int32   // per slot
	lastRun []int32   // per slot: its last run
	// Postings are kept as runs of consecutive rows, in the order they
	// were opened (so each slot's runs are ascending): consecutive
	// documents of one container repeat their metadata and most of their
	// words, so a run usually takes many rows.
	runStart []uint32 // per run: its first row
	runLen   []uint32 // per run: its rows
	runSlot  []int32  // per run: its slot
	posts    int      // postings (rows) in all runs
	memo     map[string][]int32
	cur      []int32
	// prevV and prevSlots are the last short value added and its slots
	// (consecutive rows of one container repeat their metadata).
	prevV     []byte
	prevSlots []int32
	prevOK    bool
	tb        []byte
	// bloomOnly collects token hashes for the bloom filter and no index
	// (the @timestamp column: time ranges use the timestamp section, and
	// its nearly unique values would double the index's size).
	bloomOnly bool
	toks      []uint64
	// rowToks and prevToks are the token hashes of the current and the
	// previous value of a bloomOnly column: consecutive timestamps share
	// all their tokens but the last, which are collected once.
	rowToks, prevToks []uint64
	// short caches the slots of short tokens (tokSlot).
	short [shortToks]shortTok
	// scratch of encodeGrouped, kept for the builder's next use
	encStart, encFlat, encPos, encOrder []int32
	encBuckets                          []int32
	encPairs                            []keySlot
	tokOut                              []uint64 // tokenKeys' answer
	encOut, encLens, encPost            []byte
}

// reset empties the builder for another column, keeping its memory (the
// slot table is cleared, not freed).
func (b *indexBuilder) reset() {
	clear(b.slots.ents)
	b.slots.n = 0
	b.keys, b.isTok, b.cnt = b.keys[:0], b.isTok[:0], b.cnt[:0]
	b.lastRow, b.lastRun = b.lastRow[:0], b.lastRun[:0]
	b.runStart, b.runLen, b.runSlot, b.posts = b.runStart[:0], b.runLen[:0], b.runSlot[:0], 0
	clear(b.memo)
	b.cur, b.prevV, b.prevSlots, b.prevOK = b.cur[:0], b.prevV[:0], nil, false
	b.bloomOnly = false
	clear(b.short[:])
	b.toks, b.rowToks, b.prevToks = b.toks[:0], b.rowToks[:0], b.prevToks[:0]
}

// size is about the bytes the builder holds.
func (b *indexBuilder) size() int {
	return 8*cap(b.slots.ents)/2 + 21*cap(b.keys) + 12*cap(b.runStart) + 8*cap(b.toks) + cap(b.encOut) + cap(b.encPost) +
		4*cap(b.encBuckets) + 16*cap(b.encPairs) + 8*cap(b.tokOut)
}

// maxMemoValues bounds the distinct values remembered per column.
const maxMemoValues = 4096

func newIndexBuilder() *indexBuilder {
	return &indexBuilder{memo: map[string][]int32{}}
}

// slotTable maps keys (xxhash values: their low bits are uniform) to
// slots, open addressing with linear probing; entries hold slot+1, 0 is
// empty. The keys live in indexBuilder.keys.
type slotTable struct {
	ents []int32
	n    int
}

// find returns key's slot, or -1 and the position to insert it at.
func (t *slotTable) find(keys []uint64, key uint64) (int32, int) {
	mask := len(t.ents) - 1
	for i := int(key) & mask; ; i = (i + 1) & mask {
		e := t.ents[i]
		if e == 0 {
			return -1, i
		}
		if keys[e-1] == key {
			return e - 1, i
		}
	}
}

// grow doubles the table (or makes the first one) and reinserts keys.
func (t *slotTable) grow(keys []uint64) {
	size := 2 * len(t.ents)
	if size == 0 {
		size = 64
	}
	t.ents = make([]int32, size)
	mask := size - 1
	for s, k := range keys {
		i := int(k) & mask
		for t.ents[i] != 0 {
			i = (i + 1) & mask
		}
		t.ents[i] = int32(s) + 1
	}
}

func (b *indexBuilder) slot(key uint64, tok bool) int32 {
	if 2*(b.slots.n+1) > len(b.slots.ents) {
		b.slots.grow(b.keys)
	}
	s, pos := b.slots.find(b.keys, key)
	if s < 0 {
		s = int32(len(b.keys))
		b.slots.ents[pos] = s + 1
		b.slots.n++
		b.keys = append(b.keys, key)
		b.isTok = append(b.isTok, tok)
		b.cnt = append(b.cnt, 0)
		b.lastRow = append(b.lastRow, -1)
		b.lastRun = append(b.lastRun, -1)
	} else if tok {
		b.isTok[s] = true
	}
	return s
}

func (b *indexBuilder) post(s int32, row int32) {
	last := b.lastRow[s]
	if last == row {
		return
	}
	b.lastRow[s] = row
	b.cnt[s]++
	b.posts++
	if last >= 0 && last == row-1 {
		b.runLen[b.lastRun[s]]++
		return
	}
	b.lastRun[s] = int32(len(b.runStart))
	b.runStart = append(b.runStart, uint32(row))
	b.runLen = append(b.runLen, 1)
	b.runSlot = append(b.runSlot, s)
}

// runsBySlot groups the runs by slot (a counting sort, which keeps each
// slot's runs ascending): slot s's runs are flat[start[s]:start[s+1]].
func (b *indexBuilder) runsBySlot() (start []int32, flat []int32) {
	start = resize(b.encStart, len(b.keys)+1)
	clear(start)
	for _, s := range b.runSlot {
		start[s+1]++
	}
	for s := range b.keys {
		start[s+1] += start[s]
	}
	pos := append(b.encPos[:0], start[:len(b.keys)]...)
	flat = resize(b.encFlat, len(b.runSlot))
	for q, s := range b.runSlot {
		flat[pos[s]] = int32(q)
		pos[s]++
	}
	b.encStart, b.encFlat, b.encPos = start, flat, pos
	return start, flat
}

// resize returns s with length n, reusing its array when it is large enough.
func resize[T any](s []T, n int) []T {
	if cap(s) >= n {
		return s[:n]
	}
	return make([]T, n)
}

// appendPostings appends the rows of runs (one slot's, ascending) as
// uvarint(row - previous row), the first relative to -1.
func (b *indexBuilder) appendPostings(dst []byte, runs []int32) []byte {
	prev := int64(-1)
	for _, q := range runs {
		first, n := int64(b.runStart[q]), int(b.runLen[q])
		dst = binary.AppendUvarint(dst, uint64(first-prev))
		// The rest of the run: a delta of 1 each, one byte.
		for range n - 1 {
			dst = append(dst, 1)
		}
		prev = first + int64(n) - 1
	}
	return dst
}

// add indexes value v of row (rows come in ascending order).
func (b *indexBuilder) add(row int, v []byte) {
	if b.bloomOnly {
		// The tokens before the last separator v shares with the previous
		// value were collected with it (a timestamp differs from the one
		// before in its last digits).
		p := sharedTokens(v, b.prevV)
		b.prevV = append(b.prevV[:0], v...)
		b.rowToks = b.rowToks[:0]
		b.tb = tokens(v[p:], b.tb, func(t []byte) {
			h := xxhash.Sum64(t)
			b.rowToks = append(b.rowToks, h)
			if !slices.Contains(b.prevToks, h) {
				b.toks = append(b.toks, h)
			}
		})
		b.rowToks, b.prevToks = b.prevToks, b.rowToks
		return
	}
	r := int32(row)
	short := len(v) <= maxValueKeyLen
	if short {
		if b.prevOK && string(v) == string(b.prevV) {
			for _, s := range b.prevSlots {
				b.post(s, r)
			}
			return
		}
		if slots, ok := b.memo[string(v)]; ok {
			b.remember(v, slots)
			for _, s := range slots {
				b.post(s, r)
			}
			return
		}
	}
	b.cur = b.cur[:0]
	if short {
		b.cur = append(b.cur, b.slot(valueKey(v), false))
	}
	b.tb = tokens(v, b.tb, func(t []byte) { b.cur = append(b.cur, b.tokSlot(t)) })
	for _, s := range b.cur {
		b.post(s, r)
	}
	if short {
		slots := slices.Clone(b.cur)
		if len(b.memo) < maxMemoValues {
			b.memo[string(v)] = slots
		}
		b.remember(v, slots)
	}
}

// shortToks is the size of indexBuilder.short (tokSlot), a power of two.
const (
	shortTokBits = 9
	shortToks    = 1 << shortTokBits
)

type shortTok struct {
	w    uint64 // the token's bytes, little-endian, zero-padded (0: empty)
	slot int32
}

// tokSlot returns token t's slot (adding it if new). A token of up to 8
// bytes (most words) is first looked up by its bytes, packed into a word,
// in a small direct-mapped cache: a value's common words are found there
// without being hashed or looked up in the table of the column's every
// key. Token bytes are never 0, so the padding tells lengths apart.
func (b *indexBuilder) tokSlot(t []byte) int32 {
	if len(t) > 8 {
		return b.slot(xxhash.Sum64(t), true)
	}
	var w uint64
	for i, c := range t {
		w |= uint64(c) << (8 * i)
	}
	e := &b.short[(w*0x9e3779b97f4a7c15)>>(64-shortTokBits)]
	if e.w == w {
		return e.slot
	}
	s := b.slot(xxhash.Sum64(t), true)
	*e = shortTok{w: w, slot: s}
	return s
}

// sharedTokens returns where the tokens of v that prev does not have start:
// after the last ASCII separator (not '.', which can join a token) in the
// bytes both begin with. Tokenizing v from there yields v's tokens but
// those prev has from the same bytes.
func sharedTokens(v, prev []byte) int {
	n := min(len(v), len(prev))
	l := 0
	for l < n && v[l] == prev[l] {
		l++
	}
	for i := l - 1; i >= 0; i-- {
		if c := v[i]; c < 0x80 && c != '.' && !isWordASCII(c) {
			return i + 1
		}
	}
	return 0
}

// remember keeps v (copied) and its slots as the previous short value.
func (b *indexBuilder) remember(v []byte, slots []int32) {
	b.prevV = append(b.prevV[:0], v...)
	b.prevSlots, b.prevOK = slots, true
}

// tokenKeys returns the token hashes for the bloom filter, in memory
// the builder keeps (valid until its next use); distinct reports whether
// each is there once (a bloomOnly column's may repeat).
func (b *indexBuilder) tokenKeys() (keys []uint64, distinct bool) {
	if b.bloomOnly {
		return b.toks, false
	}
	out := b.tokOut[:0]
	for s, k := range b.keys {
		if b.isTok[s] {
			out = append(out, k)
		}
	}
	b.tokOut = out
	return out, true
}

// encode returns the index in the format described above.
func (b *indexBuilder) encode() []byte {
	start, flat := b.runsBySlot()
	order := b.keyOrder()
	n := len(order)
	out := binary.AppendUvarint(make([]byte, 0, 10+12*n+b.posts*3/2), uint64(n))
	for _, s := range order {
		out = binary.LittleEndian.AppendUint64(out, b.keys[s])
	}
	ends := len(out)
	out = append(out, make([]byte, 4*n)...)
	post := len(out)
	for j, s := range order {
		out = b.appendPostings(out, flat[start[s]:start[s+1]])
		binary.LittleEndian.PutUint32(out[ends+4*j:], uint32(len(out)-post))
	}
	return out
}

// keyOrder returns the slots in ascending key order. The keys are
// xxhash values, spread evenly: one counting pass puts them, with their
// slots, into buckets by their top bits (about four to a bucket, in order),
// and each bucket is sorted on its own. That reads the keys in order
// instead of comparing through the slots at random, as a comparison sort
// of the slots did (a seal spent an eighth of its time there).
func (b *indexBuilder) keyOrder() []int32 {
	n := len(b.keys)
	order := resize(b.encOrder, n)
	b.encOrder = order
	if n == 0 {
		return order
	}
	nb := max(1, bits.Len(uint(n))-2)
	shift := 64 - nb
	ends := resize(b.encBuckets, 1<<nb+1)
	clear(ends)
	for _, k := range b.keys {
		ends[k>>shift+1]++
	}
	for i := 1; i < len(ends); i++ {
		ends[i] += ends[i-1]
	}
	pairs := resize(b.encPairs, n)
	b.encBuckets, b.encPairs = ends, pairs
	for s, k := range b.keys {
		q := k >> shift
		pairs[ends[q]] = keySlot{key: k, slot: int32(s)}
		ends[q]++
	}
	// Each bucket's end is now the next one's start.
	start := int32(0)
	for _, end := range ends[:1<<nb] {
		sortKeySlots(pairs[start:end])
		start = end
	}
	for i, p := range pairs {
		order[i] = p.slot
	}
	return order
}

type keySlot struct {
	key  uint64
	slot int32
}

// sortKeySlots sorts a bucket by key: by insertion while it is small (as
// nearly all are), else by comparison (keys made to collide).
func sortKeySlots(ps []keySlot) {
	if len(ps) > 12 {
		slices.SortFunc(ps, func(x, y keySlot) int { return cmp.Compare(x.key, y.key) })
		return
	}
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && ps[j].key < ps[j-1].key; j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
}

// encodeGrouped returns the index in version 3 (frames compressed by enc),
// in memory the builder keeps: valid until its next use.
func (b *indexBuilder) encodeGrouped(enc *zstd.Encoder) []byte {
	start, flat := b.runsBySlot()
	order := b.keyOrder()
	n := len(order)
	g := (n + indexGroupKeys - 1) / indexGroupKeys
	out := slices.Grow(b.encOut[:0], 10+12*n+b.posts/4)
	out = binary.AppendUvarint(out, uint64(n))
	for _, s := range order {
		out = binary.LittleEndian.AppendUint64(out, b.keys[s])
	}
	table := len(out)
	out = append(out, make([]byte, 4*g)...)
	frames := len(out)
	lens, post := b.encLens, b.encPost
	defer func() { b.encOut, b.encLens, b.encPost = out, lens, post }()
	for k := range g {
		lens, post = lens[:0], post[:0]
		for _, s := range order[k*indexGroupKeys : min(n, (k+1)*indexGroupKeys)] {
			l := len(post)
			post = b.appendPostings(post, flat[start[s]:start[s+1]])
			lens = binary.AppendUvarint(lens, uint64(len(post)-l))
		}
		lens = append(lens, post...)
		out = enc.EncodeAll(lens, out)
		binary.LittleEndian.PutUint32(out[table+4*k:], uint32(len(out)-frames))
	}
	return out
}

// tokIndex is a token index read in place (nothing is parsed before a
// lookup).
type tokIndex struct {
	n    int
	keys []byte // n little-endian uint64, ascending
	ends []byte // n little-endian uint32: end of each key's postings
	post []byte
	// version 3: frame ends per group and the frames (ends and post unset)
	gends  []byte
	frames []byte
}

// decodeGroupedIndex reads a version 3 index in place.
func decodeGroupedIndex(raw []byte) (*tokIndex, error) {
	n, k := binary.Uvarint(raw)
	if k <= 0 || n > uint64(len(raw)-k)/8 {
		return nil, errCorruptIndex
	}
	g := (n + indexGroupKeys - 1) / indexGroupKeys
	if g > uint64(len(raw)-k-8*int(n))/4 {
		return nil, errCorruptIndex
	}
	tab := k + 8*int(n)
	x := &tokIndex{n: int(n), keys: raw[k:tab], gends: raw[tab : tab+4*int(g)], frames: raw[tab+4*int(g):]}
	if g > 0 && int(binary.LittleEndian.Uint32(x.gends[4*(g-1):])) != len(x.frames) {
		return nil, errCorruptIndex
	}
	return x, nil
}

var errCorruptIndex = errors.New("corrupt token index")

func decodeTokIndex(raw []byte) (*tokIndex, error) {
	n, k := binary.Uvarint(raw)
	if k <= 0 || n > uint64(len(raw)-k)/12 {
		return nil, errCorruptIndex
	}
	x := &tokIndex{n: int(n), keys: raw[k : k+8*int(n)], ends: raw[k+8*int(n) : k+12*int(n)], post: raw[k+12*int(n):]}
	if n > 0 && int(binary.LittleEndian.Uint32(x.ends[4*(n-1):])) != len(x.post) {
		return nil, errCorruptIndex
	}
	return x, nil
}

func (x *tokIndex) size() int {
	return len(x.keys) + len(x.ends) + len(x.post) + len(x.gends) + len(x.frames)
}

// postings returns the encoded rows of key (nil when absent).
func (x *tokIndex) postings(key uint64) ([]byte, error) {
	i := sort.Search(x.n, func(i int) bool { return binary.LittleEndian.Uint64(x.keys[8*i:]) >= key })
	if i == x.n || binary.LittleEndian.Uint64(x.keys[8*i:]) != key {
		return nil, nil
	}
	if x.gends != nil {
		return x.groupPostings(i)
	}
	var start uint32
	if i > 0 {
		start = binary.LittleEndian.Uint32(x.ends[4*(i-1):])
	}
	end := binary.LittleEndian.Uint32(x.ends[4*i:])
	if start > end || int(end) > len(x.post) {
		return nil, errCorruptIndex
	}
	return x.post[start:end], nil
}

// groupPostings decompresses the frame of key i (version 3) and returns
// its postings.
func (x *tokIndex) groupPostings(i int) ([]byte, error) {
	g := i / indexGroupKeys
	var start uint32
	if g > 0 {
		start = binary.LittleEndian.Uint32(x.gends[4*(g-1):])
	}
	end := binary.LittleEndian.Uint32(x.gends[4*g:])
	if start > end || int(end) > len(x.frames) {
		return nil, errCorruptIndex
	}
	raw, err := decoder.DecodeAll(x.frames[start:end], nil)
	if err != nil {
		return nil, errCorruptIndex
	}
	keys := min(indexGroupKeys, x.n-g*indexGroupKeys)
	var off, mine, ln uint64
	p := 0
	for j := range keys {
		l, k := binary.Uvarint(raw[p:])
		if k <= 0 {
			return nil, errCorruptIndex
		}
		p += k
		if j < i%indexGroupKeys {
			off += l
		} else if j == i%indexGroupKeys {
			mine, ln = off, l
		}
	}
	post := raw[p:]
	if mine > uint64(len(post)) || ln > uint64(len(post))-mine {
		return nil, errCorruptIndex
	}
	return post[mine : mine+ln : mine+ln], nil
}

// bitset is a set of rows.
type bitset []uint64

func newBitset(n int) bitset    { return make(bitset, (n+63)/64) }
func (b bitset) has(i int) bool { return b[i>>6]&(1<<(uint(i)&63)) != 0 }
func (b bitset) set(i int)      { b[i>>6] |= 1 << (uint(i) & 63) }
func (b bitset) or(o bitset) {
	for i := range b {
		b[i] |= o[i]
	}
}
func (b bitset) and(o bitset) {
	for i := range b {
		b[i] &= o[i]
	}
}
func (b bitset) fill(n int) {
	for i := range n {
		b.set(i)
	}
}
func (b bitset) count() (c int) {
	for _, w := range b {
		c += bits.OnesCount64(w)
	}
	return c
}

// addRows sets the rows of encoded postings in b.
func (b bitset) addRows(post []byte, n int) error {
	row := -1
	for len(post) > 0 {
		d, k := binary.Uvarint(post)
		if k <= 0 {
			return errCorruptIndex
		}
		post = post[k:]
		row += int(d)
		if row >= n {
			return errCorruptIndex
		}
		b.set(row)
	}
	return nil
}
