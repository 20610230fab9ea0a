package store

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
)

// A block file holds one sealed head: zstd-compressed sections (timestamps,
// ids, one per column) followed by the JSON metadata (time bounds, section
// offsets, one token bloom filter per column), its length and a magic.
//
// Column encoding (sparse): for each document that has the field,
// uvarint(doc - previous doc), uvarint(len<<2|kind), bytes.
//
// Format 2 (magic SKLOGBK2) stores each column in chunks of rows
// (blockCol.Chunk rows, a power of two chosen per column so a chunk holds
// about chunkTargetBytes), each compressed on its own, so a query reads
// only the chunks holding its candidate rows (those in its time range
// whose token index postings hold every token of a phrase) instead of the
// whole column. The column section is then, uncompressed:
//
//	uvarint(number of chunks m = ceil(n / Chunk))
//	m uint32 little-endian: where each chunk's frame ends (after the table)
//	m zstd frames (empty when no row of the chunk has the field), each the
//	sparse encoding above with rows relative to the chunk's first row
//	(the first delta counts from chunk start - 1).
//
// Blocks of format 1 (SKLOGBK1, one zstd section per column) are read as
// they are; nothing rewrites them.

const (
	blockMagic  = "SKLOGBK1"
	blockMagic2 = "SKLOGBK2"
)

// Chunk sizing: about chunkTargetBytes of raw values per chunk, between
// minChunkRows and maxChunkRows rows (powers of two).
const (
	chunkTargetBytes = 3 << 10
	minChunkRows     = 32
	maxChunkRows     = 4096
)

func chunkRows(rawBytes, values int) int {
	r := minChunkRows
	if values == 0 {
		return maxChunkRows
	}
	per := max(1, rawBytes/values)
	for r < maxChunkRows && r*2*per <= chunkTargetBytes {
		r *= 2
	}
	return r
}

type section struct {
	Off int64 `json:"o"`
	Len int64 `json:"l"`
	Raw int64 `json:"r"`
}

type blockCol struct {
	Path  string  `json:"p"`
	Sec   section `json:"s"`
	Bloom bloom   `json:"b"`
	// Index is the column's token index (absent in blocks written
	// before format version 1 of the index).
	Index *section `json:"x,omitempty"`
	// Chunk is the rows per chunk of a chunked column (format 2); 0 is
	// one zstd section.
	Chunk int    `json:"c,omitempty"`
	name  string // dotted
}

type blockMeta struct {
	Gen   uint64     `json:"gen"`
	N     int        `json:"n"`
	MinTS int64      `json:"min"`
	MaxTS int64      `json:"max"`
	TS    section    `json:"ts"`
	IDs   section    `json:"ids"`
	Cols  []blockCol `json:"cols"`
	// IndexVersion is tokIndexVersion when the columns carry token
	// indexes (every column but @timestamp).
	IndexVersion int `json:"xv,omitempty"`
}

type block struct {
	path  string
	gen   uint64
	n     int
	minTS int64
	maxTS int64
	size  int64
	meta  blockMeta
	names map[string][]int // dotted name -> columns
	cache *decodeCache

	// data is the block file mapped read-only (mmap.go), unmapped when
	// refs (the index's list: 1, plus one per search holding the block)
	// drops to 0.
	data []byte
	refs atomic.Int64
	// Parsed in place on first use (slices of data, so kept with the
	// block, not in the decode cache): per column, its chunk table and
	// its version 3 token index.
	chunks []atomic.Pointer[chunkedCol]
	xs     []atomic.Pointer[tokIndex]
}

// acquire takes a reference to the block's mapping for a reader; false
// when the block was already released by its index (dropped).
func (b *block) acquire() bool {
	for {
		r := b.refs.Load()
		if r <= 0 {
			return false
		}
		if b.refs.CompareAndSwap(r, r+1) {
			return true
		}
	}
}

// release gives a reference back; the last one unmaps the file.
func (b *block) release() {
	r := b.refs.Add(-1)
	if r > 0 {
		return
	}
	if r < 0 {
		panic("store: block released more often than acquired: " + b.path)
	}
	if err := unmapFile(b.data); err != nil {
		// Not fatal: the mapping stays until the process exits.
		return
	}
}

// bytes returns section s of the file in place.
func (b *block) bytes(s section) ([]byte, error) {
	if s.Off < 0 || s.Len < 0 || s.Off > int64(len(b.data)) || s.Len > int64(len(b.data))-s.Off {
		return nil, fmt.Errorf("%s: bad section", b.path)
	}
	return b.data[s.Off : s.Off+s.Len : s.Off+s.Len], nil
}

var (
	encPool = sync.Pool{New: func() any {
		e, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
		return e
	}}
	// chunkEncPool encodes column chunks: small frames, without the
	// frame checksum (4 bytes a frame; the sparse decoding checks the
	// structure of what it reads).
	chunkEncPool = sync.Pool{New: func() any {
		e, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true), zstd.WithEncoderCRC(false))
		return e
	}}
	decoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(1<<30))
)

func dotted(path string) string { return strings.ReplaceAll(path, string(pathSep), ".") }

// writeBlock writes a sealed head into dir and returns the opened block.
// sealBuffers is writeBlock's memory kept from one seal to the next (a
// store writes one block at a time, under flushMu): the index builder and
// chunk writer of each column and the section buffers. On a busy store a
// seal follows another every few seconds, and reusing their memory saves
// both the copying of growing it again and the page faults of fresh
// memory (about 15 µs per 4 KiB page on the Firecracker VMs measured,
// where freed memory goes back to the host).
type sealBuffers struct {
	cols             []*colBuffers
	ts, ids, scratch []byte
}

type colBuffers struct {
	ib indexBuilder
	cw chunkWriter
}

func (c *colBuffers) size() int { return c.ib.size() + cap(c.cw.frames) }

// columns returns a colBuffers for each of h's columns, emptied: the
// largest kept ones go to the columns with the most bytes.
func (sb *sealBuffers) columns(h *head) []*colBuffers {
	for len(sb.cols) < len(h.cols) {
		sb.cols = append(sb.cols, &colBuffers{ib: indexBuilder{memo: map[string][]int32{}}})
	}
	slices.SortStableFunc(sb.cols, func(a, b *colBuffers) int { return cmp.Compare(b.size(), a.size()) })
	rank := make([]int, len(h.cols))
	for c := range rank {
		rank[c] = c
	}
	slices.SortStableFunc(rank, func(a, b int) int { return cmp.Compare(h.colBytes[b], h.colBytes[a]) })
	out := make([]*colBuffers, len(h.cols))
	for r, c := range rank {
		out[c] = sb.cols[r]
		out[c].ib.reset()
	}
	return out
}

func writeBlock(dir string, h *head, fsync bool, sb *sealBuffers) (*block, error) {
	if sb == nil {
		sb = &sealBuffers{}
	}
	n := h.docs.len()
	idBytes := 0
	for _, d := range h.docs.all() {
		idBytes += len(d.id) + 1
	}
	tsBuf, idBuf := slices.Grow(sb.ts[:0], 5*n), slices.Grow(sb.ids[:0], idBytes)
	defer func() { sb.ts, sb.ids = tsBuf[:0], idBuf[:0] }()
	cenc := chunkEncPool.Get().(*zstd.Encoder)
	defer chunkEncPool.Put(cenc)
	// Columns are compressed chunk by chunk as the rows are read, so only
	// their compressed frames are kept.
	cols := sb.columns(h)
	cws := make([]*chunkWriter, len(h.cols))
	ibs := make([]*indexBuilder, len(h.cols))
	for c := range ibs {
		cws[c] = &cols[c].cw
		cws[c].init(chunkRows(h.colBytes[c], h.colVals[c]), n)
		ibs[c] = &cols[c].ib
		ibs[c].bloomOnly = h.cols[c] == "@timestamp"
	}
	var prev int64
	for i, d := range h.docs.all() {
		tsBuf = binary.AppendVarint(tsBuf, d.ts-prev)
		prev = d.ts
		idBuf = appendString(idBuf, d.id)
		eachField(d.enc, func(c uint32, kind uint8, v []byte) bool {
			cws[c].add(i, kind, v, cenc)
			ibs[c].add(i, v)
			return true
		})
	}
	meta := blockMeta{Gen: h.gen, N: n, MinTS: h.minTS, MaxTS: h.maxTS, IndexVersion: tokIndexVersion}
	// The sections are written to the file as they are made, not gathered
	// in one buffer first.
	path := filepath.Join(dir, fmt.Sprintf("%016d.blk", h.gen))
	af, err := createAtomic(path)
	if err != nil {
		return nil, fmt.Errorf("write block: %w", err)
	}
	defer af.abort()
	enc := encPool.Get().(*zstd.Encoder)
	defer encPool.Put(enc)
	scratch := sb.scratch[:0]
	defer func() { sb.scratch = scratch[:0] }()
	put := func(raw []byte) section {
		scratch = enc.EncodeAll(raw, scratch[:0])
		s := section{Off: af.off, Len: int64(len(scratch)), Raw: int64(len(raw))}
		af.write(scratch)
		return s
	}
	meta.TS = put(tsBuf)
	meta.IDs = put(idBuf)
	for c, p := range h.cols {
		col := blockCol{Path: p, Bloom: newBloom(ibs[c].tokenKeys())}
		start := af.off
		cws[c].finish(af, cenc)
		col.Chunk = cws[c].rows
		col.Sec = section{Off: start, Len: af.off - start, Raw: cws[c].raw}
		if !ibs[c].bloomOnly {
			x := ibs[c].encodeGrouped(cenc)
			col.Index = &section{Off: af.off, Len: int64(len(x)), Raw: int64(len(x))}
			af.write(x)
		}
		meta.Cols = append(meta.Cols, col)
	}
	mb, err := json.Marshal(&meta)
	if err != nil {
		return nil, err
	}
	af.write(mb)
	af.write(binary.LittleEndian.AppendUint32(nil, uint32(len(mb))))
	af.write([]byte(blockMagic2))
	size := af.off
	if err := af.commit(fsync); err != nil {
		return nil, fmt.Errorf("write block: %w", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open written block: %w", err)
	}
	defer f.Close()
	data, err := mapFile(f, size)
	if err != nil {
		return nil, err
	}
	return newBlock(path, meta, data), nil
}

// newBlock makes the block of a mapped file (one reference, its index's).
func newBlock(path string, meta blockMeta, data []byte) *block {
	b := &block{path: path, gen: meta.Gen, n: meta.N, minTS: meta.MinTS, maxTS: meta.MaxTS, size: int64(len(data)), meta: meta, names: map[string][]int{}, data: data}
	b.refs.Store(1)
	b.chunks = make([]atomic.Pointer[chunkedCol], len(meta.Cols))
	b.xs = make([]atomic.Pointer[tokIndex], len(meta.Cols))
	for i := range b.meta.Cols {
		c := &b.meta.Cols[i]
		c.name = dotted(c.Path)
		b.names[c.name] = append(b.names[c.name], i)
	}
	return b
}

func openBlock(path string) (*block, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if size < int64(len(blockMagic)+4) {
		return nil, errors.New("block too short")
	}
	data, err := mapFile(f, size)
	if err != nil {
		return nil, err
	}
	blk, err := parseBlock(path, data)
	if err != nil {
		_ = unmapFile(data)
		return nil, err
	}
	return blk, nil
}

// parseBlock reads the metadata at the end of a block file's bytes.
func parseBlock(path string, data []byte) (*block, error) {
	size := int64(len(data))
	if size < int64(len(blockMagic)+4) {
		return nil, errors.New("block too short")
	}
	tail := data[size-12:]
	format := 0
	switch string(tail[4:]) {
	case blockMagic:
		format = 1
	case blockMagic2:
		format = 2
	default:
		return nil, errors.New("bad block magic")
	}
	ml := int64(binary.LittleEndian.Uint32(tail[:4]))
	if ml > size-12 {
		return nil, errors.New("bad block metadata length")
	}
	var meta blockMeta
	if err := json.Unmarshal(data[size-12-ml:size-12], &meta); err != nil {
		return nil, fmt.Errorf("block metadata: %w", err)
	}
	for i := range meta.Cols {
		c := &meta.Cols[i]
		if format == 1 {
			c.Chunk = 0
		} else if c.Chunk <= 0 || c.Chunk&(c.Chunk-1) != 0 || c.Chunk > maxChunkRows {
			return nil, fmt.Errorf("%s: bad column chunk size %d", path, c.Chunk)
		}
	}
	return newBlock(path, meta, data), nil
}

// readRaw returns one uncompressed section, in place.
func (b *block) readRaw(s section) ([]byte, error) {
	return b.bytes(s)
}

// read decompresses one section (into memory of its own).
func (b *block) read(s section) ([]byte, error) {
	c, err := b.bytes(s)
	if err != nil {
		return nil, err
	}
	out, err := decoder.DecodeAll(c, make([]byte, 0, max(0, min(s.Raw, 1<<30))))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.path, err)
	}
	return out, nil
}

func (b *block) eachID(fn func(row int, id []byte)) error {
	raw, err := b.read(b.meta.IDs)
	if err != nil {
		return err
	}
	for row := 0; len(raw) > 0; row++ {
		v, rest, ok := readBytes(raw)
		if !ok {
			return errors.New("corrupt id section")
		}
		fn(row, v)
		raw = rest
	}
	return nil
}

// idList is a block's decoded ids: id i is raw[off[i]:off[i+1]].
type idList struct {
	raw []byte
	off []uint32
}

func (l *idList) get(i int) string { return string(l.raw[l.off[i]:l.off[i+1]]) }

// is tells whether id i is id (without allocating).
func (l *idList) is(i int, id string) bool { return string(l.raw[l.off[i]:l.off[i+1]]) == id }

// ids decodes the block's ids (cached).
func (b *block) ids() (*idList, error) {
	key := cacheKey{b.path, b.meta.IDs.Off, cacheIDs}
	if v := b.cache.get(key); v != nil {
		return v.(*idList), nil
	}
	raw, err := b.read(b.meta.IDs)
	if err != nil {
		return nil, err
	}
	l := &idList{raw: make([]byte, 0, len(raw)), off: make([]uint32, 1, b.n+1)}
	for len(raw) > 0 {
		v, rest, ok := readBytes(raw)
		if !ok || len(l.off) > b.n {
			return nil, errors.New("corrupt id section")
		}
		l.raw = append(l.raw, v...)
		l.off = append(l.off, uint32(len(l.raw)))
		raw = rest
	}
	if len(l.off) != b.n+1 {
		return nil, errors.New("corrupt id section")
	}
	b.cache.put(key, l, len(l.raw)+4*len(l.off))
	return l, nil
}

func (b *block) timestamps() ([]int64, error) {
	key := cacheKey{b.path, b.meta.TS.Off, cacheTS}
	if v := b.cache.get(key); v != nil {
		return v.([]int64), nil
	}
	ts, err := b.decodeTimestamps()
	if err != nil {
		return nil, err
	}
	b.cache.put(key, ts, 8*len(ts))
	return ts, nil
}

func (b *block) decodeTimestamps() ([]int64, error) {
	raw, err := b.read(b.meta.TS)
	if err != nil {
		return nil, err
	}
	out := make([]int64, 0, b.n)
	var prev int64
	for len(raw) > 0 {
		d, k := binary.Varint(raw)
		if k <= 0 {
			return nil, errors.New("corrupt timestamp section")
		}
		prev += d
		out = append(out, prev)
		raw = raw[k:]
	}
	return out, nil
}

// colData is one decoded column: per document the value's offset in data,
// its length and kind (kindAbsent when the document lacks the field).
type colData struct {
	data []byte
	off  []uint32
	ln   []uint32
	kind []uint8
}

func (c *colData) get(i int) (uint8, []byte) {
	k := c.kind[i]
	if k == kindAbsent {
		return kindAbsent, nil
	}
	return k, c.data[c.off[i] : c.off[i]+c.ln[i]]
}

// Kinds of cached decodings.
const (
	cacheColumn = iota + 1
	cacheIndex
	cacheTS
	cacheIDs
	cacheChunkTable
	cacheChunk
)

// column decodes column ci (cached).
func (b *block) column(ci int) (*colData, error) {
	key := cacheKey{b.path, b.meta.Cols[ci].Sec.Off, cacheColumn}
	if v := b.cache.get(key); v != nil {
		return v.(*colData), nil
	}
	c, err := b.decodeColumn(ci)
	if err != nil {
		return nil, err
	}
	b.cache.put(key, c, len(c.data)+9*b.n)
	return c, nil
}

// tokIndex decodes column ci's token index (cached); nil when the block
// has none.
func (b *block) tokIndex(ci int) (*tokIndex, error) {
	s := b.meta.Cols[ci].Index
	if s == nil || (b.meta.IndexVersion != tokIndexVersion && b.meta.IndexVersion != tokIndexVersionWhole) {
		return nil, nil
	}
	if b.meta.IndexVersion != tokIndexVersionWhole {
		// Version 3 is read in place: kept with the block.
		if x := b.xs[ci].Load(); x != nil {
			return x, nil
		}
		raw, err := b.readRaw(*s)
		if err != nil {
			return nil, err
		}
		x, err := decodeGroupedIndex(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.path, err)
		}
		b.xs[ci].Store(x)
		return x, nil
	}
	key := cacheKey{b.path, s.Off, cacheIndex}
	if v := b.cache.get(key); v != nil {
		return v.(*tokIndex), nil
	}
	raw, err := b.read(*s)
	if err != nil {
		return nil, err
	}
	x, err := decodeTokIndex(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.path, err)
	}
	b.cache.put(key, x, x.size())
	return x, nil
}

func (b *block) decodeColumn(ci int) (*colData, error) {
	raw, err := b.read(b.meta.Cols[ci].Sec)
	if err != nil {
		return nil, err
	}
	c := &colData{data: raw, off: make([]uint32, b.n), ln: make([]uint32, b.n), kind: make([]uint8, b.n)}
	doc := -1
	p := 0
	for p < len(raw) {
		d, k := binary.Uvarint(raw[p:])
		if k <= 0 {
			return nil, errors.New("corrupt column")
		}
		p += k
		lk, k := binary.Uvarint(raw[p:])
		if k <= 0 {
			return nil, errors.New("corrupt column")
		}
		p += k
		doc += int(d)
		n := int(lk >> 2)
		if doc >= b.n || p+n > len(raw) {
			return nil, errors.New("corrupt column")
		}
		c.off[doc], c.ln[doc], c.kind[doc] = uint32(p), uint32(n), uint8(lk&3)
		p += n
	}
	return c, nil
}

// bloom is a token bloom filter (5 probes, about 10 bits per token).
type bloom []uint64

const bloomK = 5

// newBloom builds the filter of hashes; unless they are distinct, they
// are sorted and compacted in place first (the filter's size is ten bits
// per distinct hash).
func newBloom(hashes []uint64, distinct bool) bloom {
	if len(hashes) == 0 {
		return nil
	}
	if !distinct {
		slices.Sort(hashes)
		hashes = slices.Compact(hashes)
	}
	words := (len(hashes)*10 + 63) / 64
	b := make(bloom, words)
	m := uint64(words * 64)
	for _, h := range hashes {
		h1, h2 := h, h>>33|1
		for i := uint64(0); i < bloomK; i++ {
			bit := (h1 + i*h2) % m
			b[bit/64] |= 1 << (bit % 64)
		}
	}
	return b
}

// MarshalJSON stores the filter as base64 bytes.
func (b bloom) MarshalJSON() ([]byte, error) {
	raw := make([]byte, 0, len(b)*8)
	for _, w := range b {
		raw = binary.LittleEndian.AppendUint64(raw, w)
	}
	return json.Marshal(raw)
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (b *bloom) UnmarshalJSON(data []byte) error {
	var raw []byte
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	if len(raw)%8 != 0 {
		return errors.New("bad bloom filter")
	}
	*b = make(bloom, len(raw)/8)
	for i := range *b {
		(*b)[i] = binary.LittleEndian.Uint64(raw[i*8:])
	}
	return nil
}

func (b bloom) has(h uint64) bool {
	if len(b) == 0 {
		return false
	}
	m := uint64(len(b) * 64)
	h1, h2 := h, h>>33|1
	for i := uint64(0); i < bloomK; i++ {
		bit := (h1 + i*h2) % m
		if b[bit/64]&(1<<(bit%64)) == 0 {
			return false
		}
	}
	return true
}

// chunkWriter builds a chunked column section (uvarint(chunks), a uint32
// frame end per chunk, the frames: per chunk the sparse encoding of its
// rows' values, rows relative to the chunk's start) from values given in
// row order, compressing each chunk as soon as the rows move past it.
type chunkWriter struct {
	rows   int // per chunk
	m      int // chunks
	k      int // the chunk being filled
	prev   int // row of the chunk's last value (k*rows-1 at its start)
	tmp    []byte
	ends   []uint32 // per chunk done: end of its frame in frames
	frames []byte
	raw    int64
}

// init empties w for a column of n rows in chunks of rows, keeping its
// buffers.
func (w *chunkWriter) init(rows, n int) {
	m := (n + rows - 1) / rows
	*w = chunkWriter{rows: rows, m: m, prev: -1, tmp: w.tmp[:0], frames: w.frames[:0], ends: slices.Grow(w.ends[:0], m)}
}

// add appends the value of row (rows ascending; one row may have several).
func (w *chunkWriter) add(row int, kind uint8, v []byte, enc *zstd.Encoder) {
	for row >= (w.k+1)*w.rows {
		w.next(enc)
	}
	w.tmp = binary.AppendUvarint(w.tmp, uint64(row-w.prev))
	w.tmp = binary.AppendUvarint(w.tmp, uint64(len(v))<<2|uint64(kind))
	w.tmp = append(w.tmp, v...)
	w.prev = row
}

// next closes the chunk being filled.
func (w *chunkWriter) next(enc *zstd.Encoder) {
	if len(w.tmp) > 0 {
		w.raw += int64(len(w.tmp))
		w.frames = enc.EncodeAll(w.tmp, w.frames)
		w.tmp = w.tmp[:0]
	}
	w.ends = append(w.ends, uint32(len(w.frames)))
	w.k++
	w.prev = w.k*w.rows - 1
}

// finish closes the remaining chunks and writes the section to out.
func (w *chunkWriter) finish(out io.Writer, enc *zstd.Encoder) {
	for w.k < w.m {
		w.next(enc)
	}
	head := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+4*len(w.ends)), uint64(w.m))
	for _, e := range w.ends {
		head = binary.LittleEndian.AppendUint32(head, e)
	}
	_, _ = out.Write(head)
	_, _ = out.Write(w.frames)
}

// chunkedCol is a chunked column section read but not decompressed.
type chunkedCol struct {
	rows   int      // per chunk
	ends   []uint32 // per chunk: end of its frame in frames
	frames []byte
}

var errCorruptChunks = errors.New("corrupt chunked column")

// parseChunked reads a chunked column section of a block of n rows with
// r rows per chunk.
func parseChunked(sec []byte, n, r int) (*chunkedCol, error) {
	if r <= 0 || n < 0 {
		return nil, errCorruptChunks
	}
	m, k := binary.Uvarint(sec)
	if k <= 0 || m != uint64((n+r-1)/r) || m > uint64(len(sec)-k)/4 {
		return nil, errCorruptChunks
	}
	c := &chunkedCol{rows: r, ends: make([]uint32, m), frames: sec[k+4*int(m):]}
	var prev uint32
	for i := range c.ends {
		e := binary.LittleEndian.Uint32(sec[k+4*i:])
		if e < prev || int(e) > len(c.frames) {
			return nil, errCorruptChunks
		}
		c.ends[i], prev = e, e
	}
	if int(prev) != len(c.frames) {
		return nil, errCorruptChunks
	}
	return c, nil
}

func (c *chunkedCol) size() int { return len(c.frames) + 4*len(c.ends) }

// chunk decodes chunk k of a column of a block of n rows: the colData of
// its rows, row k*rows first.
func (c *chunkedCol) chunk(k, n int) (*colData, error) {
	if k < 0 || k >= len(c.ends) {
		return nil, errCorruptChunks
	}
	var start uint32
	if k > 0 {
		start = c.ends[k-1]
	}
	rows := min(c.rows, n-k*c.rows)
	cd := &colData{off: make([]uint32, rows), ln: make([]uint32, rows), kind: make([]uint8, rows)}
	if start == c.ends[k] {
		return cd, nil
	}
	raw, err := decoder.DecodeAll(c.frames[start:c.ends[k]], nil)
	if err != nil {
		return nil, err
	}
	if err := cd.parse(raw, rows); err != nil {
		return nil, err
	}
	return cd, nil
}

// parse fills c (arrays of rows entries, zero: absent) from the sparse
// encoding raw.
func (c *colData) parse(raw []byte, rows int) error {
	c.data = raw
	doc := -1
	p := 0
	for p < len(raw) {
		d, k := binary.Uvarint(raw[p:])
		if k <= 0 || d == 0 || d > uint64(rows) {
			return errCorruptChunks
		}
		p += k
		lk, k := binary.Uvarint(raw[p:])
		if k <= 0 {
			return errCorruptChunks
		}
		p += k
		doc += int(d)
		n := lk >> 2
		if doc >= rows || n > uint64(len(raw)-p) {
			return errCorruptChunks
		}
		c.off[doc], c.ln[doc], c.kind[doc] = uint32(p), uint32(n), uint8(lk&3)
		p += int(n)
	}
	return nil
}

// chunked reads column ci's chunk table (kept with the block: its frames
// are read in place); ci must be chunked.
func (b *block) chunked(ci int) (*chunkedCol, error) {
	if c := b.chunks[ci].Load(); c != nil {
		return c, nil
	}
	col := &b.meta.Cols[ci]
	sec, err := b.bytes(col.Sec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.path, errCorruptChunks)
	}
	c, err := parseChunked(sec, b.n, col.Chunk)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.path, err)
	}
	b.chunks[ci].Store(c)
	return c, nil
}

// columnChunk decodes chunk k of chunked column ci (cached).
func (b *block) columnChunk(ci, k int) (*colData, error) {
	key := cacheKey{b.path, b.meta.Cols[ci].Sec.Off + int64(k), cacheChunk}
	if v := b.cache.get(key); v != nil {
		return v.(*colData), nil
	}
	c, err := b.chunked(ci)
	if err != nil {
		return nil, err
	}
	cd, err := c.chunk(k, b.n)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.path, err)
	}
	b.cache.put(key, cd, len(cd.data)+9*len(cd.kind)+64)
	return cd, nil
}
