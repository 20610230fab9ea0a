package extauth

import (
	"sync"
	"time"
)

// cacheMax bounds a cache: when full, it is cleared (answers are cheap
// to ask again; a flood of distinct tokens must not grow memory).
const cacheMax = 4096

// ttlCache maps keys to values that expire.
type ttlCache[V any] struct {
	mu      sync.Mutex
	entries map[string]ttlEntry[V]
	now     func() time.Time
}

type ttlEntry[V any] struct {
	v       V
	expires time.Time
}

func newTTLCache[V any](now func() time.Time) *ttlCache[V] {
	return &ttlCache[V]{entries: map[string]ttlEntry[V]{}, now: now}
}

func (c *ttlCache[V]) get(key string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || !c.now().Before(e.expires) {
		var zero V
		return zero, false
	}
	return e.v, true
}

func (c *ttlCache[V]) put(key string, v V, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= cacheMax {
		clear(c.entries)
	}
	c.entries[key] = ttlEntry[V]{v: v, expires: c.now().Add(ttl)}
}
