package dns

import (
	"maps"
	"sync"
	"sync/atomic"
)

// table holds the current snapshot. Readers load it without locking;
// the single writer (the informer worker) builds the next snapshot from
// the current one and swaps it in.
type table struct {
	zone string
	cur  atomic.Pointer[snapshot]
	mu   sync.Mutex // serializes writers
}

func newTable(zone string) *table {
	t := &table{zone: zone}
	t.cur.Store(emptySnapshot())
	return t
}

func (t *table) load() *snapshot { return t.cur.Load() }

// apply publishes a snapshot with the given services replaced (a nil
// value deletes the key) and, when namespaces is non-nil, the namespace
// set replaced. Only the changed services are rebuilt; the maps are copied
// shallowly so the old snapshot stays valid for readers still using it.
func (t *table) apply(services map[string]*service, namespaces map[string]bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.cur.Load()
	next := &snapshot{
		serial:     old.serial + 1,
		services:   old.services,
		namespaces: old.namespaces,
		ptr:        old.ptr,
	}
	if len(services) > 0 {
		next.services = maps.Clone(old.services)
		next.ptr = maps.Clone(old.ptr)
		for key, s := range services {
			if prev := next.services[key]; prev != nil {
				removePTR(next.ptr, prev, t.zone)
			}
			if s == nil {
				delete(next.services, key)
				continue
			}
			next.services[key] = s
			addPTR(next.ptr, s, t.zone)
		}
	}
	if namespaces != nil {
		next.namespaces = namespaces
	}
	t.cur.Store(next)
}
