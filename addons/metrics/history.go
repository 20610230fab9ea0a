package metrics

import (
	"math"
	"sort"
	"sync"
	"time"
)

// Kind is what a history series describes.
type Kind uint8

// Series kinds. Keys: a node's name; a namespace's name;
// "<ns>/<Kind>/<name>" for a workload (a pod's controller, ReplicaSets of
// a Deployment folded into the Deployment); "<ns>/<pod>" for a pod;
// "<ns>/<pod>/<container>" for a container.
const (
	KindNode Kind = iota
	KindNamespace
	KindWorkload
	KindPod
	KindContainer
	numKinds
)

func (k Kind) String() string {
	return [...]string{"node", "namespace", "workload", "pod", "container"}[k]
}

// Point is one sample of a series: CPU in cores, memory working set in
// bytes.
type Point struct {
	Time   time.Time
	CPU    float64
	Memory float64
}

// History keeps the last Size scrape rounds of every series in fixed rings
// (1 hour at 15 s is 240 rounds). A series costs 8 bytes per round (two
// float32s; round times are kept once for all series), so its memory is
// fixed however long the add-on runs. A round a series missed (a stale node,
// a pod not yet started) is a gap, never a zero; series that were not
// written for Size rounds are dropped. It is safe for concurrent use.
type History struct {
	mu     sync.RWMutex
	size   uint64
	round  uint64 // rounds begun; the current round is round-1
	times  []int64
	series [numKinds]map[string]*series
}

type slot struct{ cpu, mem float32 }

type series struct {
	first, last uint64 // rounds of the first and latest write
	ring        []slot
}

// NewHistory keeps size rounds per series.
func NewHistory(size int) *History {
	if size < 1 {
		size = 1
	}
	h := &History{size: uint64(size), times: make([]int64, size)}
	for k := range h.series {
		h.series[k] = map[string]*series{}
	}
	return h
}

// Size is the number of rounds kept.
func (h *History) Size() int { return int(h.size) }

// Begin starts a round at t; Put records values in it.
func (h *History) Begin(t time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.times[h.round%h.size] = t.UnixNano()
	h.round++
	if h.round%h.size == 0 { // once per lap: drop series that left the window
		for k := range h.series {
			for key, s := range h.series[k] {
				if h.round-1-s.last >= h.size {
					delete(h.series[k], key)
				}
			}
		}
	}
}

// Batch is a writer holding the history's lock (History.Write).
type Batch struct{ h *History }

// Put is History.Put under the batch's lock.
func (b Batch) Put(kind Kind, key string, cpuCores, memBytes float64) {
	b.h.put(kind, key, cpuCores, memBytes)
}

// Add is History.Add under the batch's lock.
func (b Batch) Add(kind Kind, key string, cpuCores, memBytes float64) {
	b.h.add(kind, key, cpuCores, memBytes)
}

// Write starts a round at t and runs fn with the lock held once, for the
// many writes of a scrape round.
func (h *History) Write(t time.Time, fn func(Batch)) {
	h.Begin(t)
	h.mu.Lock()
	defer h.mu.Unlock()
	fn(Batch{h})
}

// Put records a value of series (kind, key) in the current round; a second
// Put in the same round replaces the first.
func (h *History) Put(kind Kind, key string, cpuCores, memBytes float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.put(kind, key, cpuCores, memBytes)
}

// Add adds to the value of (kind, key) in the current round (sums such as
// namespaces and workloads).
func (h *History) Add(kind Kind, key string, cpuCores, memBytes float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.add(kind, key, cpuCores, memBytes)
}

func (h *History) add(kind Kind, key string, cpuCores, memBytes float64) {
	if h.round == 0 {
		return
	}
	cur := h.round - 1
	if s, ok := h.series[kind][key]; ok && s.last == cur {
		sl := &s.ring[cur%h.size]
		sl.cpu += float32(cpuCores)
		sl.mem += float32(memBytes)
		return
	}
	h.put(kind, key, cpuCores, memBytes)
}

func (h *History) put(kind Kind, key string, cpuCores, memBytes float64) {
	if h.round == 0 {
		return
	}
	cur := h.round - 1
	s, ok := h.series[kind][key]
	if !ok {
		s = &series{first: cur, last: cur, ring: make([]slot, h.size)}
		h.series[kind][key] = s
	} else if cur > s.last {
		gap := nanSlot()
		for r, n := s.last+1, uint64(0); r < cur && n < h.size; r, n = r+1, n+1 {
			s.ring[r%h.size] = gap
		}
		s.last = cur
	}
	s.ring[cur%h.size] = slot{cpu: float32(cpuCores), mem: float32(memBytes)}
}

func nanSlot() slot {
	n := float32(math.NaN())
	return slot{cpu: n, mem: n}
}

// Series returns the points of (kind, key) still in the window, oldest
// first (nil if unknown).
func (h *History) Series(kind Kind, key string) []Point {
	h.mu.RLock()
	defer h.mu.RUnlock()
	s, ok := h.series[kind][key]
	if !ok || h.round == 0 {
		return nil
	}
	from := s.first
	if h.round > h.size && h.round-h.size > from {
		from = h.round - h.size
	}
	out := make([]Point, 0, s.last+1-min(from, s.last+1))
	for r := from; r <= s.last; r++ {
		sl := s.ring[r%h.size]
		if math.IsNaN(float64(sl.cpu)) {
			continue
		}
		out = append(out, Point{Time: time.Unix(0, h.times[r%h.size]), CPU: float64(sl.cpu), Memory: float64(sl.mem)})
	}
	return out
}

// Keys lists the series of a kind, sorted.
func (h *History) Keys(kind Kind) []string {
	h.mu.RLock()
	out := make([]string, 0, len(h.series[kind]))
	for k := range h.series[kind] {
		out = append(out, k)
	}
	h.mu.RUnlock()
	sort.Strings(out)
	return out
}

// Len is the number of series of a kind.
func (h *History) Len(kind Kind) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.series[kind])
}
