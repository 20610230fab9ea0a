package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// RegistryPrefix is the root of every key the cache mirrors.
const RegistryPrefix = "/registry/"

// Attrs are the parts of an object that selectors look at, extracted once
// when the object enters the cache.
type Attrs struct {
	Namespace string
	Name      string
	Labels    map[string]string
	// Fields holds the values of selectable fields (metadata.name, ...).
	Fields map[string]string
}

// AttrFunc extracts Attrs from a stored value.
type AttrFunc func(key string, value []byte) (Attrs, error)

// Object is one cached value. Objects are immutable once published.
type Object struct {
	Key       string
	Value     []byte
	ModRev    int64
	CreateRev int64
	Attrs     Attrs

	// alt memoises one alternative encoding of the object (the API
	// server's protobuf), computed on first use.
	alt atomic.Value
}

// AltEncoded returns enc(o), computed once per published object and kept
// with it (the API server's protobuf encoding for protobuf clients). enc
// must depend only on o; concurrent first calls may both run it.
func (o *Object) AltEncoded(enc func(*Object) ([]byte, error)) ([]byte, error) {
	if b, ok := o.alt.Load().([]byte); ok {
		return b, nil
	}
	b, err := enc(o)
	if err != nil {
		return nil, err
	}
	o.alt.Store(b)
	return b, nil
}

// EventType says what happened to an object.
type EventType string

// Event types, as in Kubernetes watch events.
const (
	Added    EventType = "ADDED"
	Modified EventType = "MODIFIED"
	Deleted  EventType = "DELETED"
	Bookmark EventType = "BOOKMARK"
)

// Event is a change seen by a watcher. For Deleted, Object is the last state.
// For Bookmark, only Rev is set (and InitialEventsEnd when it closes the
// initial events of a watch list).
type Event struct {
	Type             EventType
	Object           *Object
	Prev             *Object
	Rev              int64
	InitialEventsEnd bool

	once    sync.Once
	encoded []byte

	altOnce    sync.Once
	altEncoded []byte
}

// AltEncoded is Encoded for a second encoding (the API server's protobuf
// watch frames), computed once and shared by every watcher.
func (e *Event) AltEncoded(enc func(*Event) []byte) []byte {
	e.altOnce.Do(func() { e.altEncoded = enc(e) })
	return e.altEncoded
}

// Encoded returns enc(e), computed once and shared by every watcher.
func (e *Event) Encoded(enc func(*Event) []byte) []byte {
	e.once.Do(func() { e.encoded = enc(e) })
	return e.encoded
}

// CacheOptions tunes the cache.
type CacheOptions struct {
	// HistorySize is how many events each resource keeps for watch resume.
	HistorySize int
	// BookmarkInterval is how often watchers that allow bookmarks get one.
	BookmarkInterval time.Duration
	// WatcherBuffer is how many events may queue for one watcher before it
	// is closed as too slow (it then re-watches from its last revision).
	WatcherBuffer int
	Logger        *slog.Logger
}

// Cache mirrors everything under RegistryPrefix in memory from one etcd watch.
type Cache struct {
	store *Store
	opts  CacheOptions
	log   *slog.Logger

	mu       sync.RWMutex
	cond     *sync.Cond
	rev      int64
	buckets  map[string]*bucket
	unrouted map[string]*Object
	ready    chan struct{}
	readyOne sync.Once
	// watchCtx is the context of the current etcd watch (nil while
	// loading), for progress requests.
	watchCtx context.Context
}

type bucket struct {
	prefix   string
	attr     AttrFunc
	objects  map[string]*Object
	sorted   []string
	dirty    bool
	ring     []*Event
	next     int
	full     bool
	oldest   int64
	watchers map[*Watcher]struct{}
}

// NewCache creates a cache over store. Call Run to fill and follow it.
func NewCache(store *Store, opts CacheOptions) *Cache {
	if opts.HistorySize <= 0 {
		opts.HistorySize = 4096
	}
	if opts.BookmarkInterval <= 0 {
		opts.BookmarkInterval = time.Minute
	}
	if opts.WatcherBuffer <= 0 {
		opts.WatcherBuffer = 2048
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Cache{
		store:    store,
		opts:     opts,
		log:      opts.Logger.With("component", "watch-cache"),
		buckets:  map[string]*bucket{},
		unrouted: map[string]*Object{},
		ready:    make(chan struct{}),
	}
	c.cond = sync.NewCond(&c.mu)
	return c
}

// Ready is closed once the cache has loaded etcd's state.
func (c *Cache) Ready() <-chan struct{} { return c.ready }

// Rev returns the revision the cache reflects.
func (c *Cache) Rev() int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.rev
}

// Register starts keeping objects under prefix in their own bucket, with
// attrs extracted by attr. Registering an existing prefix replaces its
// attribute function.
func (c *Cache) Register(prefix string, attr AttrFunc) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b, ok := c.buckets[prefix]; ok {
		b.attr = attr
		return
	}
	b := &bucket{
		prefix:   prefix,
		attr:     attr,
		objects:  map[string]*Object{},
		ring:     make([]*Event, c.opts.HistorySize),
		oldest:   c.rev,
		watchers: map[*Watcher]struct{}{},
		dirty:    true,
	}
	for k, o := range c.unrouted {
		if strings.HasPrefix(k, prefix) {
			delete(c.unrouted, k)
			b.objects[k] = c.withAttrs(b, o)
		}
	}
	c.buckets[prefix] = b
}

// Unregister stops keeping a bucket for prefix; its watchers are closed.
func (c *Cache) Unregister(prefix string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.buckets[prefix]
	if !ok {
		return
	}
	for w := range b.watchers {
		w.terminate()
	}
	for k, o := range b.objects {
		c.unrouted[k] = o
	}
	delete(c.buckets, prefix)
}

func (c *Cache) withAttrs(b *bucket, o *Object) *Object {
	n := Object{Key: o.Key, Value: o.Value, ModRev: o.ModRev, CreateRev: o.CreateRev}
	if b.attr != nil {
		a, err := b.attr(o.Key, o.Value)
		if err != nil {
			c.log.Warn("cannot decode stored object", "key", o.Key, "err", err)
			a = keyAttrs(b.prefix, o.Key)
		}
		n.Attrs = a
	} else {
		n.Attrs = keyAttrs(b.prefix, o.Key)
	}
	return &n
}

func keyAttrs(prefix, key string) Attrs {
	rest := strings.TrimPrefix(key, prefix)
	ns, name, ok := strings.Cut(rest, "/")
	if !ok {
		return Attrs{Name: ns, Fields: map[string]string{"metadata.name": ns}}
	}
	return Attrs{Namespace: ns, Name: name, Fields: map[string]string{"metadata.name": name, "metadata.namespace": ns}}
}

// bucketFor finds the deepest registered bucket containing key. Caller holds mu.
func (c *Cache) bucketFor(key string) *bucket {
	for i := len(key) - 1; i > len(RegistryPrefix)-2; i-- {
		if key[i] == '/' {
			if b, ok := c.buckets[key[:i+1]]; ok {
				return b
			}
		}
	}
	return nil
}

// Run loads the state and follows etcd until ctx ends, re-listing if the
// watch falls behind compaction.
func (c *Cache) Run(ctx context.Context) error {
	for {
		err := c.runOnce(ctx)
		if ctx.Err() != nil {
			c.mu.Lock()
			for _, b := range c.buckets {
				for w := range b.watchers {
					w.terminate()
				}
			}
			c.mu.Unlock()
			return nil
		}
		c.log.Warn("watch cache restarting", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (c *Cache) runOnce(ctx context.Context) error {
	rev, all, err := c.loadAll(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.rev = rev
	c.unrouted = map[string]*Object{}
	for _, b := range c.buckets {
		// Watchers cannot be continued across a re-list: close them, the
		// clients re-watch from their last revision or re-list.
		for w := range b.watchers {
			w.terminate()
		}
		b.objects = map[string]*Object{}
		b.dirty = true
		b.next, b.full = 0, false
		b.oldest = rev
		for i := range b.ring {
			b.ring[i] = nil
		}
	}
	for _, o := range all {
		if b := c.bucketFor(o.Key); b != nil {
			b.objects[o.Key] = c.withAttrs(b, o)
		} else {
			c.unrouted[o.Key] = o
		}
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	c.readyOne.Do(func() { close(c.ready) })

	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := c.store.cli.Watch(wctx, RegistryPrefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1),
		clientv3.WithPrevKV(), clientv3.WithProgressNotify())
	c.mu.Lock()
	c.watchCtx = wctx
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.watchCtx = nil
		c.mu.Unlock()
	}()
	bookmarks := time.NewTicker(c.opts.BookmarkInterval)
	defer bookmarks.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-bookmarks.C:
			c.sendBookmarks()
		case resp, ok := <-wch:
			if !ok {
				return errors.New("etcd watch channel closed")
			}
			if resp.CompactRevision != 0 {
				return fmt.Errorf("watch compacted at %d: %w", resp.CompactRevision, ErrExpired)
			}
			if err := resp.Err(); err != nil {
				return fmt.Errorf("etcd watch: %w", err)
			}
			if resp.IsProgressNotify() {
				c.mu.Lock()
				if resp.Header.Revision > c.rev {
					c.rev = resp.Header.Revision
				}
				c.cond.Broadcast()
				c.mu.Unlock()
				continue
			}
			c.apply(resp.Events)
		}
	}
}

// requestProgress asks etcd for a progress notification on the cache's
// watch. clientv3 keys its watch streams by the context's outgoing gRPC
// metadata, and a stream takes the lifetime of the context that opened
// it: so the request goes with the watch's own context. With another
// context it would open a stream of its own, without watchers, that etcd
// answers nothing on. Without a watch (loading) there is nothing to ask.
func (c *Cache) requestProgress() error {
	c.mu.RLock()
	wctx := c.watchCtx
	c.mu.RUnlock()
	if wctx == nil {
		return nil
	}
	return c.store.cli.RequestProgress(wctx)
}

func (c *Cache) loadAll(ctx context.Context) (int64, []*Object, error) {
	var all []*Object
	start := RegistryPrefix
	var rev int64
	for {
		res, err := c.store.List(ctx, RegistryPrefix, start, rev, 5000)
		if err != nil {
			return 0, nil, err
		}
		rev = res.Rev
		for _, kv := range res.KVs {
			all = append(all, &Object{Key: kv.Key, Value: kv.Value, ModRev: kv.ModRev, CreateRev: kv.CreateRev})
		}
		if !res.More || len(res.KVs) == 0 {
			return rev, all, nil
		}
		start = res.KVs[len(res.KVs)-1].Key + "\x00"
	}
}

func (c *Cache) apply(evs []*clientv3.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range evs {
		key := string(ev.Kv.Key)
		rev := ev.Kv.ModRevision
		var obj, prev *Object
		b := c.bucketFor(key)
		if ev.Type == clientv3.EventTypeDelete {
			rev = ev.Kv.ModRevision
			if b != nil {
				prev = b.objects[key]
				delete(b.objects, key)
				b.dirty = true
			} else {
				delete(c.unrouted, key)
			}
		} else {
			val, err := c.store.Decode(key, ev.Kv.Value)
			if err != nil {
				c.log.Error("cannot decode value from etcd", "key", key, "err", err)
				continue
			}
			raw := &Object{Key: key, Value: val, ModRev: ev.Kv.ModRevision, CreateRev: ev.Kv.CreateRevision}
			if b != nil {
				prev = b.objects[key]
				obj = c.withAttrs(b, raw)
				if prev == nil {
					b.dirty = true
				}
				b.objects[key] = obj
			} else {
				c.unrouted[key] = raw
			}
		}
		if rev > c.rev {
			c.rev = rev
		}
		if b == nil {
			continue
		}
		var e *Event
		switch {
		case obj == nil && prev != nil:
			e = &Event{Type: Deleted, Object: &Object{Key: prev.Key, Value: prev.Value, ModRev: rev, CreateRev: prev.CreateRev, Attrs: prev.Attrs}, Prev: prev, Rev: rev}
		case obj == nil:
			continue
		case prev == nil:
			e = &Event{Type: Added, Object: obj, Rev: rev}
		default:
			e = &Event{Type: Modified, Object: obj, Prev: prev, Rev: rev}
		}
		b.push(e)
		for w := range b.watchers {
			w.offer(e)
		}
	}
	c.cond.Broadcast()
}

func (b *bucket) push(e *Event) {
	if b.full {
		b.oldest = b.ring[b.next].Rev
	}
	b.ring[b.next] = e
	b.next++
	if b.next == len(b.ring) {
		b.next = 0
		b.full = true
	}
}

// since returns the ring's events with Rev > rev, oldest first.
func (b *bucket) since(rev int64) []*Event {
	var out []*Event
	n := b.next
	if b.full {
		n = len(b.ring)
	}
	start := 0
	if b.full {
		start = b.next
	}
	for i := 0; i < n; i++ {
		e := b.ring[(start+i)%len(b.ring)]
		if e != nil && e.Rev > rev {
			out = append(out, e)
		}
	}
	return out
}

func (c *Cache) sendBookmarks() {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e := &Event{Type: Bookmark, Rev: c.rev}
	for _, b := range c.buckets {
		for w := range b.watchers {
			if w.bookmarks {
				w.offer(e)
			}
		}
	}
}

// WaitFresh blocks until the cache reflects at least etcd's current
// revision (a consistent read) and returns that revision.
func (c *Cache) WaitFresh(ctx context.Context) (int64, error) {
	cur, err := c.store.CurrentRevision(ctx)
	if err != nil {
		return 0, err
	}
	if err := c.WaitRev(ctx, cur); err != nil {
		return 0, err
	}
	return cur, nil
}

// WaitRev blocks until the cache reflects revision rev.
func (c *Cache) WaitRev(ctx context.Context, rev int64) error {
	c.mu.RLock()
	ok := c.rev >= rev
	c.mu.RUnlock()
	if ok {
		return nil
	}
	// Ask etcd for a progress notification so that the cache's revision
	// advances even if nothing under the registry changed.
	_ = c.requestProgress()
	deadline := time.Now().Add(3 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	timer := time.AfterFunc(time.Until(deadline), func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer timer.Stop()
	retry := time.Now().Add(250 * time.Millisecond)
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.rev < rev {
		if time.Now().After(deadline) {
			return fmt.Errorf("watch cache at revision %d, want %d: timed out", c.rev, rev)
		}
		if time.Now().After(retry) {
			retry = time.Now().Add(250 * time.Millisecond)
			c.mu.Unlock()
			_ = c.requestProgress()
			c.mu.Lock()
			continue
		}
		c.cond.Wait()
	}
	return nil
}

// List returns the objects of the bucket registered at prefix whose keys
// start with within (the bucket prefix, or prefix+namespace+"/"), sorted by
// key, that pass pred (nil = all), and the revision they reflect.
func (c *Cache) List(prefix, within string, pred func(*Object) bool) ([]*Object, int64, error) {
	c.mu.Lock()
	b, ok := c.buckets[prefix]
	if !ok {
		c.mu.Unlock()
		return nil, 0, fmt.Errorf("list %s: no cache bucket", prefix)
	}
	if b.dirty {
		b.sorted = b.sorted[:0]
		for k := range b.objects {
			b.sorted = append(b.sorted, k)
		}
		sort.Strings(b.sorted)
		b.dirty = false
	}
	rev := c.rev
	keys := b.sorted
	if within != "" && within != prefix {
		lo := sort.SearchStrings(keys, within)
		hi := lo
		for hi < len(keys) && strings.HasPrefix(keys[hi], within) {
			hi++
		}
		keys = keys[lo:hi]
	}
	out := make([]*Object, 0, len(keys))
	for _, k := range keys {
		o := b.objects[k]
		if pred == nil || pred(o) {
			out = append(out, o)
		}
	}
	c.mu.Unlock()
	return out, rev, nil
}

// Get returns one cached object.
func (c *Cache) Get(key string) (*Object, int64, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if b := c.bucketFor(key); b != nil {
		o, ok := b.objects[key]
		return o, c.rev, ok
	}
	o, ok := c.unrouted[key]
	return o, c.rev, ok
}

// WatchOptions selects what a watcher sees.
type WatchOptions struct {
	// Within restricts keys to this prefix (e.g. a namespace); "" = bucket.
	Within string
	// FromRev: events after this revision. Zero with Initial means "now".
	FromRev int64
	// Initial sends every current object as Added first (watch from "" or "0",
	// or sendInitialEvents=true).
	Initial bool
	// InitialEnd appends a bookmark marking the end of the initial events.
	InitialEnd bool
	// Bookmarks asks for periodic bookmarks.
	Bookmarks bool
	// Filter keeps events whose object passes (nil = all).
	Filter func(*Object) bool
}

// Watcher receives events for one watch request.
type Watcher struct {
	pending   []*Event
	ch        chan *Event
	bookmarks bool
	filter    func(*Object) bool
	within    string
	cache     *Cache
	bucket    *bucket
	closed    bool // guarded by cache.mu
}

// Watch starts a watcher on the bucket registered at prefix. It returns
// ErrExpired when opts.FromRev is older than the bucket's history.
func (c *Cache) Watch(prefix string, opts WatchOptions) (*Watcher, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.buckets[prefix]
	if !ok {
		return nil, fmt.Errorf("watch %s: no cache bucket", prefix)
	}
	w := &Watcher{
		ch:        make(chan *Event, c.opts.WatcherBuffer),
		bookmarks: opts.Bookmarks,
		filter:    opts.Filter,
		within:    opts.Within,
		cache:     c,
		bucket:    b,
	}
	if opts.Initial {
		keys := make([]string, 0, len(b.objects))
		for k := range b.objects {
			if w.within == "" || strings.HasPrefix(k, w.within) {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			o := b.objects[k]
			if w.match(o) {
				w.pending = append(w.pending, &Event{Type: Added, Object: o, Rev: o.ModRev})
			}
		}
		if opts.InitialEnd {
			w.pending = append(w.pending, &Event{Type: Bookmark, Rev: c.rev, InitialEventsEnd: true})
		}
	} else {
		if opts.FromRev < b.oldest {
			return nil, fmt.Errorf("watch from %d (oldest %d): %w", opts.FromRev, b.oldest, ErrExpired)
		}
		for _, e := range b.since(opts.FromRev) {
			if ce := w.convert(e); ce != nil {
				w.pending = append(w.pending, ce)
			}
		}
	}
	b.watchers[w] = struct{}{}
	return w, nil
}

func (w *Watcher) match(o *Object) bool {
	if o == nil {
		return false
	}
	if w.within != "" && !strings.HasPrefix(o.Key, w.within) {
		return false
	}
	return w.filter == nil || w.filter(o)
}

// convert applies the watcher's filter to e as upstream does: an object
// that stops matching is reported Deleted, one that starts matching Added.
func (w *Watcher) convert(e *Event) *Event {
	if e.Type == Bookmark {
		return e
	}
	cur := w.match(e.Object)
	if e.Type == Deleted {
		if w.match(e.Prev) {
			return e
		}
		return nil
	}
	old := e.Prev != nil && w.match(e.Prev)
	switch {
	case cur && (old || e.Type == Added):
		return e
	case cur && !old:
		return &Event{Type: Added, Object: e.Object, Rev: e.Rev}
	case !cur && old:
		return &Event{Type: Deleted, Object: e.Object, Prev: e.Prev, Rev: e.Rev}
	}
	return nil
}

// offer queues e without blocking; a watcher that cannot keep up is closed.
// Caller holds cache.mu.
func (w *Watcher) offer(e *Event) {
	if w.closed {
		return
	}
	ce := w.convert(e)
	if ce == nil {
		return
	}
	select {
	case w.ch <- ce:
	default:
		w.cache.log.Warn("closing slow watcher", "prefix", w.bucket.prefix, "buffered", len(w.ch))
		w.terminate()
	}
}

// terminate closes the watcher's channel. Caller holds cache.mu.
func (w *Watcher) terminate() {
	if w.closed {
		return
	}
	w.closed = true
	delete(w.bucket.watchers, w)
	close(w.ch)
}

// Pending returns the events to send before those from Events (the initial
// state and the replayed history). It is only valid to call once.
func (w *Watcher) Pending() []*Event {
	p := w.pending
	w.pending = nil
	return p
}

// Events delivers live events; it is closed when the watcher ends.
func (w *Watcher) Events() <-chan *Event { return w.ch }

// Stop ends the watcher.
func (w *Watcher) Stop() {
	w.cache.mu.Lock()
	w.terminate()
	w.cache.mu.Unlock()
}
