package store

import "hash/maphash"

var idSeed = maphash.MakeSeed()

// idHash hashes a document id for the id set (a variable so that tests can
// force collisions).
var idHash = func(id string) uint64 { return maphash.String(idSeed, id) }

// idSet holds an index's caller-chosen ids by 64-bit hash, each with where
// its document is (generation<<32 | row, in a head or a block), so a hash
// match is confirmed against the stored id and two distinct ids are never
// taken for one. An id whose hash is already held by another id goes to
// the exact set other (almost always empty).
type idSet struct {
	byHash idTable
	other  map[string]struct{}
}

func newIDSet() idSet { return idSet{other: map[string]struct{}{}} }

func idLoc(gen uint64, row int) uint64 { return gen<<32 | uint64(uint32(row)) }

// hasID tells whether id (hash h) is stored (idx.mu held).
func (idx *index) hasID(id string, h uint64) bool {
	if len(idx.ids.other) > 0 {
		if _, ok := idx.ids.other[id]; ok {
			return true
		}
	}
	loc, ok := idx.ids.byHash.get(h)
	return ok && idx.idAt(loc, id)
}

// addID records id (hash h, not stored yet) at loc (idx.mu held).
func (idx *index) addID(id string, h, loc uint64) {
	if i, found := idx.ids.byHash.find(h); found {
		idx.ids.other[id] = struct{}{}
	} else {
		idx.ids.byHash.put(i, h, loc)
	}
}

// addNewID is hasID then, for an id not stored, addID, with one lookup of
// the hash: it records id at loc and returns true, or returns false when
// id is stored (idx.mu held).
func (idx *index) addNewID(id string, h, loc uint64) bool {
	if len(idx.ids.other) > 0 {
		if _, ok := idx.ids.other[id]; ok {
			return false
		}
	}
	i, found := idx.ids.byHash.find(h)
	if !found {
		idx.ids.byHash.put(i, h, loc)
		return true
	}
	if idx.idAt(idx.ids.byHash.locAt(i), id) {
		return false
	}
	idx.ids.other[id] = struct{}{}
	return true
}

// dropIDs forgets the ids of a block being dropped (idx.mu held).
func (idx *index) dropIDs(blk *block) error {
	return blk.eachID(func(row int, id []byte) {
		h := idHash(string(id))
		idx.ids.byHash.deleteAt(h, idLoc(blk.gen, row))
		if len(idx.ids.other) > 0 {
			delete(idx.ids.other, string(id))
		}
	})
}

// idTable maps id hashes to locations (it was a map[uint64]uint64): open
// addressing with linear probing over {hash, location} pairs, four to a
// cache line, so one probe sequence tells whether a hash is held and, if
// not, where it goes. A zero hash marks an empty slot; the hash 0 itself
// is kept beside the table. At most 3/4 of the slots are used.
//
// Growing is incremental. An index's table holds the ids of all its
// blocks (tens of millions of entries, hundreds of MB), and rehashing it
// at once under the index's lock stalled ingest and searches for as long
// as writing the doubled table into fresh memory took (~200 ms at 1M ids
// here). Instead the full table becomes old, a table twice its size
// becomes ents, and each find moves a few of old's slots over (a swept
// slot is left as a tombstone: hash 0, location movedLoc) until old is
// empty, long before ents can fill. Meanwhile lookups look in both; an
// entry is in exactly one of them.
type idTable struct {
	ents    []idEnt // a power of two of them, or none
	n       int     // entries held, in ents and old
	zero    bool    // the hash 0 is held, at zeroLoc
	zeroLoc uint64
	// old is the table being moved into ents (nil: none); its slots
	// before swept are tombstones or empty.
	old   []idEnt
	swept int
	// touched keeps what touch read (never looked at).
	touched uint64
}

type idEnt struct{ h, loc uint64 }

// zeroSlot is what find answers for the hash 0.
const zeroSlot = -1

// movedLoc marks a swept slot of the old table (with hash 0): probes go
// on past it, as past a held entry.
const movedLoc = ^uint64(0)

// sweepStep is how many old slots each find moves: the old table is empty
// after len(old)/sweepStep finds, while ents fills from 3/8 to 3/4 only
// after len(old)*3/4 inserts.
const sweepStep = 16

// probe returns the slot of tab holding h, or -1 (h != 0; tab may be
// empty or hold tombstones).
func probe(tab []idEnt, h uint64) int {
	if len(tab) == 0 {
		return -1
	}
	mask := len(tab) - 1
	for i := int(h) & mask; ; i = (i + 1) & mask {
		switch e := tab[i]; e.h {
		case h:
			return i
		case 0:
			if e.loc != movedLoc {
				return -1
			}
		}
	}
}

// get returns the location of hash h.
func (t *idTable) get(h uint64) (uint64, bool) {
	if h == 0 {
		return t.zeroLoc, t.zero
	}
	if i := probe(t.ents, h); i >= 0 {
		return t.ents[i].loc, true
	}
	if i := probe(t.old, h); i >= 0 {
		return t.old[i].loc, true
	}
	return 0, false
}

// idsAhead is how many documents ahead BulkAppend reads the id table's
// slots (touch).
const idsAhead = 4

// touch reads the slots where a probe for h starts, in both tables while
// growing, so that a find of h soon after finds them in the cache (a
// random slot of a table of millions of ids is a cache and TLB miss).
func (t *idTable) touch(h uint64) {
	var v uint64
	if len(t.ents) > 0 {
		v = t.ents[int(h)&(len(t.ents)-1)].h
	}
	if len(t.old) > 0 {
		v |= t.old[int(h)&(len(t.old)-1)].h
	}
	t.touched |= v // a use, so the loads are kept
}

// find returns the slot holding hash h (found), or the empty slot where
// put may add it, growing the table first if one more would overfill it.
func (t *idTable) find(h uint64) (slot int, found bool) {
	if h == 0 {
		return zeroSlot, t.zero
	}
	if t.old != nil {
		t.sweep(sweepStep)
	}
	if 4*(t.n+1) > 3*len(t.ents) {
		t.grow()
	}
	if i := probe(t.old, h); i >= 0 {
		// Not swept yet: moved now, and found where it lands.
		e := t.old[i]
		t.old[i] = idEnt{loc: movedLoc}
		return t.insert(e), true
	}
	mask := len(t.ents) - 1
	for i := int(h) & mask; ; i = (i + 1) & mask {
		switch t.ents[i].h {
		case h:
			return i, true
		case 0:
			return i, false
		}
	}
}

// insert puts e (not held in ents) into ents and returns its slot.
func (t *idTable) insert(e idEnt) int {
	mask := len(t.ents) - 1
	i := int(e.h) & mask
	for t.ents[i].h != 0 {
		i = (i + 1) & mask
	}
	t.ents[i] = e
	return i
}

// sweep moves up to k more of old's slots into ents, and drops old once
// all are.
func (t *idTable) sweep(k int) {
	end := min(len(t.old), t.swept+k)
	for i := t.swept; i < end; i++ {
		if e := t.old[i]; e.h != 0 {
			t.insert(e)
			t.old[i] = idEnt{loc: movedLoc}
		}
	}
	t.swept = end
	if end == len(t.old) {
		t.old, t.swept = nil, 0
	}
}

// locAt returns the location held in a slot find found.
func (t *idTable) locAt(slot int) uint64 {
	if slot == zeroSlot {
		return t.zeroLoc
	}
	return t.ents[slot].loc
}

// put adds hash h at loc into the empty slot find returned for it (no
// other change to the table in between).
func (t *idTable) put(slot int, h, loc uint64) {
	if slot == zeroSlot {
		t.zero, t.zeroLoc = true, loc
		return
	}
	t.ents[slot] = idEnt{h, loc}
	t.n++
}

// deleteAt removes hash h if it is held at loc.
func (t *idTable) deleteAt(h, loc uint64) {
	if h == 0 {
		if t.zero && t.zeroLoc == loc {
			t.zero, t.zeroLoc = false, 0
		}
		return
	}
	if i := probe(t.old, h); i >= 0 {
		// A tombstone keeps the probe runs of old intact.
		if t.old[i].loc == loc {
			t.old[i] = idEnt{loc: movedLoc}
			t.n--
		}
		return
	}
	if len(t.ents) == 0 {
		return
	}
	mask := len(t.ents) - 1
	i := int(h) & mask
	for ; t.ents[i].h != h; i = (i + 1) & mask {
		if t.ents[i].h == 0 {
			return
		}
	}
	if t.ents[i].loc != loc {
		return
	}
	// Backward shift: move later entries of the probe run into the hole
	// unless their home slot lies cyclically in (hole, their slot].
	for j := i; ; {
		j = (j + 1) & mask
		e := t.ents[j]
		if e.h == 0 {
			break
		}
		if k := int(e.h) & mask; (i < j && i < k && k <= j) || (j < i && (i < k || k <= j)) {
			continue
		}
		t.ents[i] = e
		i = j
	}
	t.ents[i] = idEnt{}
	t.n--
}

// grow doubles the table (or makes the first one): the full one becomes
// old, swept into the new one by the finds that follow. An old table not
// yet swept (growth faster than the sweep, which sweepStep rules out) is
// swept first.
func (t *idTable) grow() {
	if t.old != nil {
		t.sweep(len(t.old))
	}
	size := 2 * len(t.ents)
	if size == 0 {
		size = 16
	}
	t.old, t.swept = t.ents, 0
	t.ents = make([]idEnt, size)
	if len(t.old) == 0 {
		t.old = nil
	}
}
