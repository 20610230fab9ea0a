package store

import (
	"encoding/binary"
	"iter"
	"math/bits"
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
	// colBytes is per column about what its values take encoded in a
	// block (writeBlock sizes its buffers with it).
	colBytes []int
	// prevCols is the column of each field position of the previous
	// document: documents of one source list the same fields in the
	// same order, so a comparison usually replaces the map lookup.
	prevCols []uint32
	docs     docList
	chunk    []byte
	bytes    int
	minTS    int64
	maxTS    int64
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
		size := docPage
		switch {
		case p <= 1:
			size = firstPage
		case p < smallPages:
			size = firstPage << (p - 1)
		}
		l.pages = append(l.pages, make([]hdoc, size))
	}
	l.pages[p][off] = d
	l.n++
}

// snapshot returns the documents so far (the caller holds the index lock);
// later appends do not change what it holds.
func (l *docList) snapshot() docList {
	return docList{pages: l.pages[:len(l.pages):len(l.pages)], n: l.n}
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

func newHead(gen uint64) *head {
	return &head{gen: gen, colIdx: map[string]uint32{}, minTS: 1<<63 - 1, maxTS: -1 << 63}
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
		n := arenaChunk
		if size > n/4 {
			n = size // large documents get their own allocation
		}
		h.chunk = make([]byte, 0, n)
	}
	buf := h.chunk[:0]
	for j, f := range fields {
		c := h.column(j, f.path)
		h.colBytes[c] += len(f.value) + 4
		buf = binary.AppendUvarint(buf, uint64(c))
		buf = binary.AppendUvarint(buf, uint64(len(f.value))<<2|uint64(f.kind))
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
	}
	if j < len(h.prevCols) {
		h.prevCols[j] = c
	} else if j == len(h.prevCols) {
		h.prevCols = append(h.prevCols, c)
	}
	return c
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
