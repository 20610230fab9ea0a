package store

import (
	"encoding/binary"
	"errors"
	"math/bits"
	"sort"

	"github.com/cespare/xxhash/v2"
)

// A token index (one per column of a block, format version 1) maps keys to
// the rows holding them. Keys are the xxhash of each lower-cased token of a
// value (the same hashes the bloom filters and the scanning matcher use)
// and, for values up to maxValueKeyLen bytes, a hash of the whole value
// (valueKey). Encoding, zstd-compressed as one section:
//
//	uvarint(number of keys)
//	per key, ascending: uvarint(key - previous key), uvarint(postings bytes)
//	per key, in the same order: its rows as uvarint(row - previous row),
//	the first relative to -1.
//
// Blocks written before the index existed have no such section; queries
// on them scan the column as before.

// tokIndexVersion is recorded in block metadata.
const tokIndexVersion = 1

// maxValueKeyLen bounds the values whose whole-value hash is indexed;
// exact matches of longer values scan the column.
const maxValueKeyLen = 256

// valueKey hashes a whole value apart from token hashes (tokens never
// contain 0xff, valid UTF-8 never does).
func valueKey(v []byte) uint64 {
	var d xxhash.Digest
	d.Reset()
	_, _ = d.Write([]byte{0xff})
	_, _ = d.Write(v)
	return d.Sum64()
}

// posting is one (key, row) pair while a block is built.
type posting struct {
	key uint64
	row uint32
}

// sortPostings sorts by key, keeping rows in their (ascending) order: an
// LSD radix sort on 16-bit digits.
func sortPostings(ps []posting) []posting {
	if len(ps) < 256 {
		sort.SliceStable(ps, func(i, j int) bool { return ps[i].key < ps[j].key })
		return ps
	}
	tmp := make([]posting, len(ps))
	var count [1 << 16]int
	for shift := uint(0); shift < 64; shift += 16 {
		clear(count[:])
		for _, p := range ps {
			count[(p.key>>shift)&0xffff]++
		}
		if count[(ps[0].key>>shift)&0xffff] == len(ps) {
			continue // every key has this digit
		}
		sum := 0
		for i, c := range count {
			count[i] = sum
			sum += c
		}
		for _, p := range ps {
			d := (p.key >> shift) & 0xffff
			tmp[count[d]] = p
			count[d]++
		}
		ps, tmp = tmp, ps
	}
	return ps
}

// encodeTokIndex encodes postings sorted by key (rows ascending within a
// key; duplicates are dropped).
func encodeTokIndex(ps []posting) []byte {
	var dict, post []byte
	nkeys := 0
	var prevKey uint64
	for i := 0; i < len(ps); {
		k := ps[i].key
		start := len(post)
		prevRow := int64(-1)
		for ; i < len(ps) && ps[i].key == k; i++ {
			r := int64(ps[i].row)
			if r == prevRow {
				continue
			}
			post = binary.AppendUvarint(post, uint64(r-prevRow))
			prevRow = r
		}
		dict = binary.AppendUvarint(dict, k-prevKey)
		dict = binary.AppendUvarint(dict, uint64(len(post)-start))
		prevKey = k
		nkeys++
	}
	out := binary.AppendUvarint(make([]byte, 0, len(dict)+len(post)+10), uint64(nkeys))
	out = append(out, dict...)
	return append(out, post...)
}

// tokIndex is a decoded token index.
type tokIndex struct {
	keys []uint64
	offs []uint32 // len(keys)+1 offsets into post
	post []byte
}

var errCorruptIndex = errors.New("corrupt token index")

func decodeTokIndex(raw []byte) (*tokIndex, error) {
	n, k := binary.Uvarint(raw)
	if k <= 0 || n > uint64(len(raw)) {
		return nil, errCorruptIndex
	}
	p := k
	x := &tokIndex{keys: make([]uint64, n), offs: make([]uint32, n+1)}
	var key uint64
	var off uint32
	for i := range x.keys {
		d, k := binary.Uvarint(raw[p:])
		if k <= 0 {
			return nil, errCorruptIndex
		}
		p += k
		l, k := binary.Uvarint(raw[p:])
		if k <= 0 {
			return nil, errCorruptIndex
		}
		p += k
		key += d
		x.keys[i] = key
		x.offs[i] = off
		off += uint32(l)
	}
	x.offs[n] = off
	x.post = raw[p:]
	if int(off) != len(x.post) {
		return nil, errCorruptIndex
	}
	return x, nil
}

func (x *tokIndex) size() int { return len(x.keys)*12 + len(x.post) }

// postings returns the encoded rows of key (nil when absent).
func (x *tokIndex) postings(key uint64) []byte {
	i := sort.Search(len(x.keys), func(i int) bool { return x.keys[i] >= key })
	if i == len(x.keys) || x.keys[i] != key {
		return nil
	}
	return x.post[x.offs[i]:x.offs[i+1]]
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
