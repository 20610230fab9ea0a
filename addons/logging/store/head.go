package store

import (
	"encoding/binary"
	"iter"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// head holds the documents of an index not yet sealed into a block. Docs
// and cols only grow (readers take a snapshot of them under the index
// lock: docs.snapshot(), cols' slice header); each document's fields are
// encoded once into an arena: uvarint(column) uvarint(len<<2|kind) bytes,
// repeated.
type head struct {
	gen    uint64
	cols   []string // column paths (segments joined by pathSep)
	colIdx map[string]uint32
	// colBytes, colVals and colLast are per column the bytes its values
	// take in a block's sparse column encoding (uvarint row gap, uvarint
	// length and kind, value), its values and the row of its last value:
	// writeBlock picks each column's chunk size from them before reading
	// the rows.
	colBytes []int
	colVals  []int
	colLast  []int
	// prevCols is the column of each field position of the previous
	// document: documents of one source list the same fields in the
	// same order, so a comparison usually replaces the map lookup.
	prevCols []uint32
	docs     docList
	chunk    []byte
	bytes    int
	minTS    int64
	maxTS    int64

	// refs counts the index's reference (while it lists the head as its
	// head or a sealed one) and one per search snapshot holding it; the
	// last release gives the head's memory (arena chunks, full document
	// pages) to mem for the heads that follow. nil mem: the GC takes it.
	refs   atomic.Int32
	mem    *headMem
	chunks [][]byte // the arena chunks of arenaChunk bytes
}

type hdoc struct {
	ts  int64
	id  string
	enc []byte
}

const arenaChunk = 1 << 20

// docList is a head's list of documents in pages that are never moved or
// copied once made (a slice of 48-byte documents with pointers grew by a
// quarter at a time: each document was copied about four times and five
// times its size was allocated, fresh memory being the dear part). Page 0
// holds documents [0, 32), page k in 1..5 [16<<k, 32<<k), and every page
// after them docPage documents, so a small head stays small.
type docList struct {
	pages [][]hdoc // each its full length, written up to n
	n     int
	mem   *headMem // where full pages come from
}

const (
	docPageBits = 10
	docPage     = 1 << docPageBits
	firstPage   = 32 // documents in page 0 (and page 1)
	smallPages  = 6  // pages 0..5 hold the first docPage documents
)

func (l *docList) len() int { return l.n }

// docPlace returns the page of document i and its place in it.
func docPlace(i int) (page, off int) {
	if i >= docPage {
		return smallPages - 1 + i>>docPageBits, i & (docPage - 1)
	}
	if i < firstPage {
		return 0, i
	}
	k := bits.Len(uint(i / firstPage)) // 1..5
	return k, i - firstPage<<(k-1)
}

// at returns document i (i < l.n).
func (l *docList) at(i int) *hdoc {
	p, off := docPlace(i)
	return &l.pages[p][off]
}

func (l *docList) append(d hdoc) {
	p, off := docPlace(l.n)
	if p == len(l.pages) {
		var pg []hdoc
		switch {
		case p <= 1:
			pg = make([]hdoc, firstPage)
		case p < smallPages:
			pg = make([]hdoc, firstPage<<(p-1))
		default:
			pg = l.mem.page()
		}
		l.pages = append(l.pages, pg)
	}
	l.pages[p][off] = d
	l.n++
}

// snapshot returns the documents so far (the caller holds the index lock);
// later appends do not change what it holds.
func (l *docList) snapshot() docList {
	return docList{pages: l.pages[:len(l.pages):len(l.pages)], n: l.n, mem: l.mem}
}

// all yields the documents in order.
func (l *docList) all() iter.Seq2[int, hdoc] {
	return func(yield func(int, hdoc) bool) {
		i := 0
		for _, pg := range l.pages {
			for _, d := range pg[:min(len(pg), l.n-i)] {
				if !yield(i, d) {
					return
				}
				i++
			}
		}
	}
}

// newHead makes a head holding the index's reference, whose memory comes
// from and goes back to mem (nil: the GC's).
func newHead(gen uint64, mem *headMem) *head {
	h := &head{gen: gen, colIdx: map[string]uint32{}, minTS: 1<<63 - 1, maxTS: -1 << 63, mem: mem}
	h.docs.mem = mem
	h.refs.Store(1)
	return h
}

// acquire takes a reference for a search snapshot (the caller holds the
// index lock, and the index lists h).
func (h *head) acquire() { h.refs.Add(1) }

// release gives back a reference; after the last, nothing may read the
// head's documents.
func (h *head) release() {
	if h.refs.Add(-1) == 0 && h.mem != nil {
		h.mem.put(h)
	}
}

// add appends a document and returns the bytes it takes.
func (h *head) add(id string, fields []field, now func() time.Time) int {
	ts, haveTS := int64(0), false
	size := 0
	for _, f := range fields {
		if !haveTS && string(f.path) == "@timestamp" {
			ts, haveTS = parseTime(f.kind, f.value)
		}
		size += 2*binary.MaxVarintLen32 + len(f.value)
	}
	if !haveTS {
		ts = now().UnixNano()
	}
	if size > cap(h.chunk) {
		if size > arenaChunk/4 {
			h.chunk = make([]byte, 0, size) // large documents get their own allocation
		} else {
			h.chunk = h.mem.chunk()
			h.chunks = append(h.chunks, h.chunk)
		}
	}
	buf := h.chunk[:0]
	row := h.docs.len()
	for j, f := range fields {
		c := h.column(j, f.path)
		lk := uint64(len(f.value))<<2 | uint64(f.kind)
		h.colBytes[c] += uvarintLen(uint64(row-h.colLast[c])) + uvarintLen(lk) + len(f.value)
		h.colVals[c]++
		h.colLast[c] = row
		buf = binary.AppendUvarint(buf, uint64(c))
		buf = binary.AppendUvarint(buf, lk)
		buf = append(buf, f.value...)
	}
	enc := buf[:len(buf):len(buf)]
	h.chunk = buf[len(buf):]
	h.docs.append(hdoc{ts: ts, id: id, enc: enc})
	if ts < h.minTS {
		h.minTS = ts
	}
	if ts > h.maxTS {
		h.maxTS = ts
	}
	n := len(enc) + len(id) + 48
	h.bytes += n
	return n
}

// column returns the column of path, the j-th field of a document.
func (h *head) column(j int, path []byte) uint32 {
	if j < len(h.prevCols) {
		if c := h.prevCols[j]; h.cols[c] == string(path) {
			return c
		}
	}
	c, ok := h.colIdx[string(path)]
	if !ok {
		c = uint32(len(h.cols))
		p := string(path)
		h.cols = append(h.cols, p)
		h.colIdx[p] = c
		h.colBytes = append(h.colBytes, 0)
		h.colVals = append(h.colVals, 0)
		h.colLast = append(h.colLast, -1)
	}
	if j < len(h.prevCols) {
		h.prevCols[j] = c
	} else if j == len(h.prevCols) {
		h.prevCols = append(h.prevCols, c)
	}
	return c
}

// uvarintLen is the length of binary.AppendUvarint's encoding of x.
func uvarintLen(x uint64) int {
	return (bits.Len64(x|1) + 6) / 7
}

// eachField decodes a head document's fields.
func eachField(enc []byte, fn func(col uint32, kind uint8, v []byte) bool) {
	for len(enc) > 0 {
		c, k := binary.Uvarint(enc)
		if k <= 0 {
			return
		}
		enc = enc[k:]
		lk, k := binary.Uvarint(enc)
		if k <= 0 {
			return
		}
		enc = enc[k:]
		n := int(lk >> 2)
		if n > len(enc) {
			return
		}
		if !fn(uint32(c), uint8(lk&3), enc[:n]) {
			return
		}
		enc = enc[n:]
	}
}

// headMem keeps the memory of heads whose blocks are written, their arena
// chunks and full document pages, for the heads that fill after them:
// touching memory the process has not used yet (or gave back to the
// system) costs more than writing it (~15 µs per 4 KiB page on a
// Firecracker VM), and a head's memory is mostly that. It keeps at most
// maxChunks chunks and 2*maxChunks pages, and lets everything go once it
// went unused for a trim period (the flusher trims every minute).
type headMem struct {
	mu        sync.Mutex
	chunks    [][]byte
	pages     [][]hdoc
	maxChunks int
	used      bool // drawn from since the last trim
}

func newHeadMem(maxBytes int64) *headMem {
	return &headMem{maxChunks: int(max(1, maxBytes/arenaChunk))}
}

// chunk returns an empty arena chunk of arenaChunk bytes.
func (m *headMem) chunk() []byte {
	if m != nil {
		if c, ok := takeKept(m, &m.chunks); ok {
			return c
		}
	}
	return make([]byte, 0, arenaChunk)
}

// page returns a zeroed document page of docPage documents.
func (m *headMem) page() []hdoc {
	if m != nil {
		if pg, ok := takeKept(m, &m.pages); ok {
			return pg
		}
	}
	return make([]hdoc, docPage)
}

// takeKept takes the last of the kept items (under m.mu, noting that the
// memory is in use).
func takeKept[T any](m *headMem, kept *[]T) (T, bool) {
	var zero T
	m.mu.Lock()
	defer m.mu.Unlock()
	m.used = true
	n := len(*kept)
	if n == 0 {
		return zero, false
	}
	v := (*kept)[n-1]
	(*kept)[n-1] = zero
	*kept = (*kept)[:n-1]
	return v, true
}

// put takes the memory of a head nothing reads any more.
func (m *headMem) put(h *head) {
	var pages [][]hdoc
	for _, pg := range h.docs.pages {
		if len(pg) == docPage {
			clear(pg) // its ids and arena slices
			pages = append(pages, pg)
		}
	}
	m.mu.Lock()
	for _, c := range h.chunks {
		if len(m.chunks) < m.maxChunks {
			m.chunks = append(m.chunks, c[:0])
		}
	}
	for _, pg := range pages {
		if len(m.pages) < 2*m.maxChunks {
			m.pages = append(m.pages, pg)
		}
	}
	m.mu.Unlock()
	h.chunks, h.chunk, h.docs = nil, nil, docList{}
}

// trim lets the kept memory go if none was drawn since the last trim.
func (m *headMem) trim() {
	m.mu.Lock()
	if !m.used {
		clear(m.chunks)
		clear(m.pages)
		m.chunks, m.pages = nil, nil
	}
	m.used = false
	m.mu.Unlock()
}
