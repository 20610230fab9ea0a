package store

import (
	"encoding/binary"
	"math/bits"
	"time"
)

// head holds the documents of an index not yet sealed into a block. Docs
// and cols only grow (readers take a snapshot of their slice headers under
// the index lock); each document's fields are encoded once into an arena:
// uvarint(column) uvarint(len<<2|kind) bytes, repeated.
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
	docs     []hdoc
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
	row := len(h.docs)
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
	h.docs = append(h.docs, hdoc{ts: ts, id: id, enc: enc})
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
