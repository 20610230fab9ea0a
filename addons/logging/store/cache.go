package store

import (
	"container/list"
	"sync"
)

// decodeCache keeps recently decoded block data (row chunks, timestamps,
// ids, format 1 columns, version 2 token indexes: memory of its own, never
// slices of a block's mapping) up to a byte budget, least recently used
// out first.
// Blocks are immutable and their paths unique (generations only grow), so
// entries never go stale; a dropped block's entries age out.
type decodeCache struct {
	mu    sync.Mutex
	max   int
	used  int
	ll    *list.List
	items map[cacheKey]*list.Element
}

type cacheKey struct {
	path string
	off  int64
	kind uint8
}

type cacheEntry struct {
	key  cacheKey
	val  any
	size int
}

func newDecodeCache(maxBytes int) *decodeCache {
	return &decodeCache{max: maxBytes, ll: list.New(), items: map[cacheKey]*list.Element{}}
}

func (c *decodeCache) get(k cacheKey) any {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*cacheEntry).val
	}
	return nil
}

func (c *decodeCache) put(k cacheKey, v any, size int) {
	if c == nil || size > c.max/4 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[k]; ok {
		return
	}
	c.items[k] = c.ll.PushFront(&cacheEntry{key: k, val: v, size: size})
	c.used += size
	for c.used > c.max {
		e := c.ll.Back()
		ce := e.Value.(*cacheEntry)
		c.ll.Remove(e)
		delete(c.items, ce.key)
		c.used -= ce.size
	}
}
