// Package store is Skiff's embedded log store: append-only, compressed,
// column-oriented blocks per index (VictoriaLogs/Loki style) behind a
// group-committed write-ahead log. Each index keeps an in-memory head of
// recent documents; heads are sealed into immutable block files with
// per-block time bounds and a token bloom filter per field, so searches skip
// blocks by time and by term before decompressing the few columns a query
// reads. Documents are JSON objects flattened into dotted field names;
// _source is rebuilt from the columns with the client's nesting.
//
// The Elasticsearch-compatible HTTP API over it lives in
// addons/logging/esapi.
package store

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Sentinel errors.
var (
	ErrIndexNotFound = errors.New("index not found")
	ErrIndexExists   = errors.New("index already exists")
	ErrBadIndexName  = errors.New("invalid index name")
	ErrClosed        = errors.New("store closed")
)

// Defaults.
const (
	DefaultFlushInterval = 5 * time.Minute
	DefaultHeadBytes     = 64 << 20
	DefaultMaxAge        = 7 * 24 * time.Hour
	DefaultCacheBytes    = 256 << 20
)

// Options configure a Store.
type Options struct {
	// Dir holds the store's files (<data-dir>/logs in the server).
	Dir string
	// MaxAge drops blocks whose newest document is older (default 7 days;
	// negative = keep forever).
	MaxAge time.Duration
	// MaxBytes drops the oldest blocks while the blocks take more space
	// (0 = no limit).
	MaxBytes int64
	// FlushInterval seals heads into blocks at least this often (default 5m).
	FlushInterval time.Duration
	// HeadBytes seals heads when their documents take this much memory
	// (default 64 MiB).
	HeadBytes int64
	// NoSync skips fsync (tests and benchmarks measuring its cost only).
	NoSync bool
	// CacheBytes bounds the cache of decoded block data (row chunks,
	// timestamps, ids; format 1 columns and version 2 token indexes)
	// searches share (default 256 MiB; negative = no cache). Compressed
	// sections are read in place from the mapped files, not cached.
	CacheBytes int
	Logger     *slog.Logger
	// Now is the clock (tests).
	Now func() time.Time
}

// Store is an open log store. All methods are safe for concurrent use.
type Store struct {
	opts Options
	log  *slog.Logger

	// sealMu orders appends against sealing: appenders hold it shared
	// while they add to heads and the WAL; seal holds it exclusively
	// while it swaps heads and rotates the WAL.
	sealMu  sync.RWMutex
	gen     uint64 // current generation, guarded by sealMu
	wal     *wal
	mu      sync.RWMutex // indices
	indices map[string]*index

	headBytes atomic.Int64
	flushReq  chan struct{}
	flushMu   sync.Mutex // one seal+flush at a time
	// sealBufs is the memory writeBlock keeps between seals; seals counts
	// the blocks written since dropIdleSealBuffers last looked (both under
	// flushMu).
	sealBufs *sealBuffers
	seals    int
	stop     chan struct{}
	done     chan struct{}
	closed   atomic.Bool
	docSeq   atomic.Int64
	cache    *decodeCache
	mem      *headMem // memory of written heads, for the next ones
}

// index is one named index (an incarnation: deleting and re-creating a
// name makes a new uid and directory).
type index struct {
	name    string
	uid     string
	dir     string
	created time.Time

	mu      sync.Mutex
	ids     idSet
	head    *head
	sealed  []*head
	blocks  []*block
	maxGen  uint64 // newest block generation
	deleted bool
}

// idAt tells whether the document at loc has the given id (idx.mu held).
// A block that cannot be read answers no: a re-sent document is then
// stored twice rather than a new one refused.
func (idx *index) idAt(loc uint64, id string) bool {
	gen, row := loc>>32, int(uint32(loc))
	if h := idx.head; h.gen == gen {
		return row < h.docs.len() && h.docs.at(row).id == id
	}
	for _, h := range idx.sealed {
		if h.gen == gen {
			return row < h.docs.len() && h.docs.at(row).id == id
		}
	}
	for i := len(idx.blocks) - 1; i >= 0; i-- {
		if b := idx.blocks[i]; b.gen == gen {
			l, err := b.ids()
			return err == nil && row < b.n && l.is(row, id)
		}
	}
	return false
}

// Open opens (or creates) the store in opts.Dir, replays the write-ahead
// log and starts the background flusher.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("logstore: Dir is required")
	}
	if opts.MaxAge == 0 {
		opts.MaxAge = DefaultMaxAge
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = DefaultFlushInterval
	}
	if opts.HeadBytes <= 0 {
		opts.HeadBytes = DefaultHeadBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.CacheBytes == 0 {
		opts.CacheBytes = DefaultCacheBytes
	}
	s := &Store{
		opts: opts, log: opts.Logger.With("component", "logstore"),
		indices: map[string]*index{}, flushReq: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	if opts.CacheBytes > 0 {
		s.cache = newDecodeCache(opts.CacheBytes)
	}
	s.mem = newHeadMem(opts.HeadBytes)
	if err := os.MkdirAll(filepath.Join(opts.Dir, "indices"), 0o700); err != nil {
		return nil, fmt.Errorf("logstore: %w", err)
	}
	if err := s.load(); err != nil {
		return nil, fmt.Errorf("logstore: %w", err)
	}
	go s.flusher()
	return s, nil
}

// load reads index directories and blocks, replays WAL files, writes the
// replayed documents into blocks and starts a fresh WAL generation.
func (s *Store) load() error {
	root := filepath.Join(s.opts.Dir, "indices")
	ents, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	var maxGen uint64
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		idx, err := loadIndex(filepath.Join(root, e.Name()), s.cache)
		if err != nil {
			s.log.Warn("skipping unreadable index directory", "dir", e.Name(), "err", err)
			continue
		}
		if old := s.indices[idx.name]; old != nil && old.created.After(idx.created) {
			continue
		}
		s.indices[idx.name] = idx
		if idx.maxGen > maxGen {
			maxGen = idx.maxGen
		}
	}
	gens, err := walGens(s.opts.Dir)
	if err != nil {
		return err
	}
	for _, g := range gens {
		if g > maxGen {
			maxGen = g
		}
	}
	s.gen = maxGen + 1
	for _, idx := range s.indices {
		idx.head = newHead(s.gen, s.mem)
	}
	replayed := 0
	fl := &flattener{}
	for _, g := range gens {
		err := readWAL(filepath.Join(s.opts.Dir, walName(g)), func(p []byte) error {
			if s.replay(g, p, fl) {
				replayed++
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("replay wal %d: %w", g, err)
		}
	}
	if replayed > 0 {
		s.log.Info("replayed write-ahead log", "documents", replayed)
	}
	// Persist what was replayed, then drop the old WAL files.
	s.wal = &wal{} // placeholder so seal can rotate
	if err := s.flushAll(); err != nil {
		return err
	}
	w, err := openWAL(s.opts.Dir, s.gen, !s.opts.NoSync)
	if err != nil {
		return err
	}
	s.wal = w
	for _, g := range gens {
		if err := w.removeGen(g); err != nil {
			return err
		}
	}
	return nil
}

type indexMeta struct {
	Name    string    `json:"name"`
	UID     string    `json:"uid"`
	Created time.Time `json:"created"`
}

func loadIndex(dir string, cache *decodeCache) (*index, error) {
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		return nil, err
	}
	var m indexMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	idx := &index{name: m.Name, uid: m.UID, dir: dir, created: m.Created, ids: newIDSet()}
	idx.head = newHead(0, nil) // replaced by load
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".blk") {
			continue
		}
		blk, err := openBlock(filepath.Join(dir, e.Name()))
		if err != nil {
			idx.releaseBlocks()
			return nil, fmt.Errorf("block %s: %w", e.Name(), err)
		}
		blk.cache = cache
		idx.blocks = append(idx.blocks, blk)
	}
	sort.Slice(idx.blocks, func(i, j int) bool { return idx.blocks[i].gen < idx.blocks[j].gen })
	for _, blk := range idx.blocks {
		if blk.gen > idx.maxGen {
			idx.maxGen = blk.gen
		}
		if err := blk.eachID(func(row int, id []byte) {
			idx.addID(string(id), idHash(string(id)), idLoc(blk.gen, row))
		}); err != nil {
			idx.releaseBlocks()
			return nil, fmt.Errorf("block %s ids: %w", blk.path, err)
		}
	}
	return idx, nil
}

// releaseBlocks gives back the index's reference to each of its blocks and
// forgets them (idx.mu held, or idx not shared yet); searches holding a
// block keep it mapped until they end.
func (idx *index) releaseBlocks() {
	for _, b := range idx.blocks {
		b.release()
	}
	idx.blocks = nil
}

func (s *Store) replay(gen uint64, p []byte, fl *flattener) bool {
	if len(p) == 0 {
		return false
	}
	typ, rest := p[0], p[1:]
	uid, rest, ok := readBytes(rest)
	if !ok {
		return false
	}
	name, rest, ok := readBytes(rest)
	if !ok {
		return false
	}
	switch typ {
	case recCreateIndex:
		if idx := s.indices[string(name)]; idx != nil && idx.uid == string(uid) {
			return false
		}
		if _, err := s.makeIndex(string(name), string(uid), false); err != nil {
			s.log.Warn("replay: create index", "index", string(name), "err", err)
		}
	case recDeleteIndex:
		if idx := s.indices[string(name)]; idx != nil && idx.uid == string(uid) {
			s.dropIndex(idx)
		}
	case recDoc:
		idx := s.indices[string(name)]
		if idx == nil || idx.uid != string(uid) || idx.maxGen >= gen {
			return false
		}
		id, rest, ok := readBytes(rest)
		if !ok || len(rest) < 1 {
			return false
		}
		auto, src := rest[0] == 1, rest[1:]
		if err := fl.flatten(src); err != nil {
			return false
		}
		idx.mu.Lock()
		st := idx.insert(string(id), idHash(string(id)), auto, true, fl.fields, s)
		idx.mu.Unlock()
		return st == 201
	}
	return false
}

// makeIndex creates an index directory. Callers hold s.mu (or run in load).
func (s *Store) makeIndex(name, uid string, logIt bool) (*index, error) {
	if err := ValidIndexName(name); err != nil {
		return nil, err
	}
	if uid == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		uid = hex.EncodeToString(b[:])
	}
	dir := filepath.Join(s.opts.Dir, "indices", uid)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	idx := &index{name: name, uid: uid, dir: dir, created: s.opts.Now().UTC(), ids: newIDSet(), head: newHead(s.gen, s.mem)}
	mb, _ := json.Marshal(indexMeta{Name: name, UID: uid, Created: idx.created})
	if err := writeFileSync(filepath.Join(dir, "index.json"), mb, !s.opts.NoSync); err != nil {
		return nil, err
	}
	s.indices[name] = idx
	if logIt {
		s.wal.appendRecords(indexRecord(recCreateIndex, idx))
	}
	return idx, nil
}

func indexRecord(typ byte, idx *index) []byte {
	b := []byte{typ}
	b = appendString(b, idx.uid)
	return appendString(b, idx.name)
}

// dropIndex removes an index's files. Callers hold s.mu (or run in load).
func (s *Store) dropIndex(idx *index) {
	idx.mu.Lock()
	idx.deleted = true
	idx.releaseBlocks()
	idx.mu.Unlock()
	if s.indices[idx.name] == idx {
		delete(s.indices, idx.name)
	}
	if err := os.RemoveAll(idx.dir); err != nil {
		s.log.Warn("remove index directory", "index", idx.name, "err", err)
	}
}

// ValidIndexName applies Elasticsearch's rules for index names.
func ValidIndexName(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > 255 {
		return fmt.Errorf("%w: %q", ErrBadIndexName, name)
	}
	if strings.ContainsAny(name, "\\/*?\"<>| ,#:") || strings.ToLower(name) != name {
		return fmt.Errorf("%w: %q must be lowercase and must not contain \\, /, *, ?, \", <, >, |, space, ',', #, :", ErrBadIndexName, name)
	}
	if c := name[0]; c == '-' || c == '_' || c == '+' {
		return fmt.Errorf("%w: %q must not start with '_', '-', or '+'", ErrBadIndexName, name)
	}
	return nil
}

// Op is one bulk operation.
type Op struct {
	Index string
	// ID is the document id ("" = generated).
	ID string
	// Create refuses an existing ID (409); otherwise an existing ID is
	// kept and answered as a no-op (documents are immutable here).
	Create bool
	Source []byte
}

// OpResult is the outcome of one Op, in Elasticsearch's terms.
type OpResult struct {
	Status int    // 201 created, 200 no-op, 409 conflict, 400 bad document
	ID     string // the document's id (generated when the Op had none)
	Seq    int64
	Err    error
}

// Bulk applies ops in order and returns once every accepted document is
// durable (written and fsynced with the other requests of the moment).
// One bad document never affects the others.
func (s *Store) Bulk(ctx context.Context, ops []Op) ([]OpResult, error) {
	return s.BulkAppend(ctx, nil, ops)
}

// BulkAppend is Bulk appending the results to res, so a caller may reuse
// their memory. Nothing of ops (their sources) is kept after it returns.
func (s *Store) BulkAppend(ctx context.Context, res []OpResult, ops []Op) ([]OpResult, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	n0 := len(res)
	res = slices.Grow(res, len(ops))[:n0+len(ops)]
	out := res[n0:]
	clear(out)
	fl := flattenerPool.Get().(*flattener)
	defer flattenerPool.Put(fl)
	// The documents' WAL records are framed into rb and copied into the
	// WAL's buffer whenever rb holds recBatch bytes (and at the end).
	rb := recBufs.Get().(*recBuf)
	defer rb.release()
	var seq uint64
	// The id table is larger than the caches: its slots for the
	// documents a few ahead are read while this one is inserted, so
	// their finds find them in the cache (ahead[j%len] is idHash of ops[j].ID).
	var ahead [2 * idsAhead]uint64
	for j := range min(idsAhead, len(ops)) {
		if ops[j].ID != "" {
			ahead[j%len(ahead)] = idHash(ops[j].ID)
		}
	}
	s.sealMu.RLock()
	for i, op := range ops {
		r := &out[i]
		next := i + idsAhead
		if next < len(ops) && ops[next].ID != "" {
			ahead[next%len(ahead)] = idHash(ops[next].ID)
		} else {
			next = -1
		}
		idx, err := s.indexFor(op.Index)
		if err != nil {
			r.Status, r.Err = 400, err
			continue
		}
		if err := fl.flatten(op.Source); err != nil {
			r.Status, r.Err = 400, err
			continue
		}
		auto := op.ID == ""
		id := op.ID
		if auto {
			id = newID()
		}
		r.ID = id
		idx.mu.Lock()
		if idx.deleted {
			idx.mu.Unlock()
			// Deleted concurrently: create it again.
			if idx, err = s.indexFor(op.Index); err != nil {
				r.Status, r.Err = 400, err
				continue
			}
			idx.mu.Lock()
		}
		if next >= 0 && ops[next].Index == op.Index {
			idx.ids.byHash.touch(ahead[next%len(ahead)])
		}
		r.Status = idx.insert(id, ahead[i%len(ahead)], auto, op.Create, fl.fields, s)
		idx.mu.Unlock()
		if r.Status != 201 {
			continue
		}
		r.Seq = s.docSeq.Add(1)
		rb.b = appendDocRecord(rb.b, idx, id, auto, op.Source)
		if len(rb.b) >= recBatch {
			seq = s.wal.appendFramed(rb.b)
			rb.b = rb.b[:0]
		}
	}
	if len(rb.b) > 0 {
		seq = s.wal.appendFramed(rb.b)
		rb.b = rb.b[:0]
	}
	s.sealMu.RUnlock()
	if s.headBytes.Load() >= s.opts.HeadBytes {
		s.requestFlush()
	}
	if seq > 0 {
		if err := s.wal.sync(seq); err != nil {
			return nil, err
		}
	}
	return res, ctx.Err()
}

// appendDocRecord appends a document's WAL record, framed as
// wal.appendRecords frames a payload.
func appendDocRecord(b []byte, idx *index, id string, auto bool, src []byte) []byte {
	start := len(b)
	b = append(b, make([]byte, recHeader)...)
	b = append(b, recDoc)
	b = appendString(b, idx.uid)
	b = appendString(b, idx.name)
	b = appendString(b, id)
	if auto {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = append(b, src...)
	frameRecord(b[start:])
	return b
}

// recBuf is a pooled buffer of framed WAL records.
type recBuf struct{ b []byte }

// recBatch is how many bytes of records a bulk request frames before it
// copies them into the WAL's buffer; maxRecBuf bounds what the pool keeps
// (a larger document grows the buffer once).
const (
	recBatch  = 64 << 10
	maxRecBuf = 1 << 20
)

var recBufs = sync.Pool{New: func() any { return &recBuf{b: make([]byte, 0, recBatch+4<<10)} }}

func (rb *recBuf) release() {
	if cap(rb.b) > maxRecBuf {
		return
	}
	rb.b = rb.b[:0]
	recBufs.Put(rb)
}

var flattenerPool = sync.Pool{New: func() any { return &flattener{} }}

func newID() string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// indexFor returns the named index, creating it on first use as
// Elasticsearch's automatic index creation does. Callers hold sealMu shared.
func (s *Store) indexFor(name string) (*index, error) {
	s.mu.RLock()
	idx := s.indices[name]
	s.mu.RUnlock()
	if idx != nil {
		return idx, nil
	}
	if err := ValidIndexName(name); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if idx := s.indices[name]; idx != nil {
		return idx, nil
	}
	return s.makeIndex(name, "", true)
}

// insert adds a flattened document (id hashing to h) to the head (idx.mu
// held) and returns
// 201; when a caller-chosen id is stored already it adds nothing and
// returns 409 for a create, 200 (a no-op: the first document is kept)
// otherwise.
func (idx *index) insert(id string, h uint64, auto, create bool, fields []field, s *Store) int {
	if !auto && !idx.addNewID(id, h, idLoc(idx.head.gen, idx.head.docs.len())) {
		if create {
			return 409
		}
		return 200
	}
	n := idx.head.add(id, fields, s.opts.Now)
	s.headBytes.Add(int64(n))
	return 201
}

// CreateIndex creates an empty index.
func (s *Store) CreateIndex(ctx context.Context, name string) error {
	if s.closed.Load() {
		return ErrClosed
	}
	s.sealMu.RLock()
	s.mu.Lock()
	if s.indices[name] != nil {
		s.mu.Unlock()
		s.sealMu.RUnlock()
		return fmt.Errorf("%w: %s", ErrIndexExists, name)
	}
	_, err := s.makeIndex(name, "", true)
	s.mu.Unlock()
	seq := s.wal.appendRecords()
	s.sealMu.RUnlock()
	if err != nil {
		return err
	}
	return s.wal.sync(seq)
}

// DeleteIndex deletes the named indices (exact names).
func (s *Store) DeleteIndex(ctx context.Context, names ...string) error {
	if s.closed.Load() {
		return ErrClosed
	}
	s.sealMu.RLock()
	s.mu.Lock()
	var recs [][]byte
	for _, n := range names {
		idx := s.indices[n]
		if idx == nil {
			continue
		}
		recs = append(recs, indexRecord(recDeleteIndex, idx))
		s.dropIndex(idx)
	}
	s.mu.Unlock()
	seq := s.wal.appendRecords(recs...)
	s.sealMu.RUnlock()
	return s.wal.sync(seq)
}

// IndexInfo describes an index for _cat/indices.
type IndexInfo struct {
	Name    string
	UID     string
	Created time.Time
	Docs    int64
	Bytes   int64
}

// Indices lists the indices whose names match any of patterns (Elasticsearch
// wildcards; none = all), sorted by name.
func (s *Store) Indices(patterns ...string) []IndexInfo {
	var out []IndexInfo
	for _, idx := range s.match(patterns) {
		info := IndexInfo{Name: idx.name, UID: idx.uid, Created: idx.created}
		idx.mu.Lock()
		info.Docs = int64(idx.head.docs.len())
		info.Bytes = int64(idx.head.bytes)
		for _, h := range idx.sealed {
			info.Docs += int64(h.docs.len())
			info.Bytes += int64(h.bytes)
		}
		for _, b := range idx.blocks {
			info.Docs += int64(b.n)
			info.Bytes += b.size
		}
		idx.mu.Unlock()
		out = append(out, info)
	}
	return out
}

// Exists reports whether the named index exists.
func (s *Store) Exists(name string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.indices[name] != nil
}

// match returns the indices matching patterns, sorted by name. A pattern
// may hold '*' wildcards, be a comma list, start with '-' to exclude, or
// be "_all"/"*".
func (s *Store) match(patterns []string) []*index {
	var pats []string
	for _, p := range patterns {
		for _, q := range strings.Split(p, ",") {
			if q = strings.TrimSpace(q); q != "" {
				pats = append(pats, q)
			}
		}
	}
	s.mu.RLock()
	var out []*index
	for name, idx := range s.indices {
		if matchIndex(pats, name) {
			out = append(out, idx)
		}
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func matchIndex(pats []string, name string) bool {
	if len(pats) == 0 {
		return true
	}
	ok := false
	for _, p := range pats {
		neg := false
		if strings.HasPrefix(p, "-") && p != "-" {
			neg, p = true, p[1:]
		}
		if p == "_all" {
			p = "*"
		}
		if wildcardMatch(p, name) {
			ok = !neg
		}
	}
	return ok
}

// wildcardMatch matches s against a pattern with '*' (any run) and '?'.
func wildcardMatch(p, s string) bool {
	px, sx := 0, 0
	nextP, nextS := -1, -1
	for px < len(p) || sx < len(s) {
		if px < len(p) {
			switch c := p[px]; c {
			case '*':
				nextP, nextS = px, sx+1
				px++
				continue
			case '?':
				if sx < len(s) {
					px++
					sx++
					continue
				}
			default:
				if sx < len(s) && s[sx] == c {
					px++
					sx++
					continue
				}
			}
		}
		if nextS > 0 && nextS <= len(s) {
			px, sx = nextP, nextS
			continue
		}
		return false
	}
	return true
}

func (s *Store) requestFlush() {
	select {
	case s.flushReq <- struct{}{}:
	default:
	}
}

// Flush seals every head and writes its blocks (tests, shutdown).
func (s *Store) Flush() error { return s.flushAll() }

func (s *Store) flusher() {
	defer close(s.done)
	t := time.NewTicker(s.opts.FlushInterval)
	defer t.Stop()
	rt := time.NewTicker(time.Minute)
	defer rt.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-s.flushReq:
		case <-t.C:
		case <-rt.C:
			s.applyRetention()
			s.dropIdleSealBuffers()
			s.mem.trim()
			continue
		}
		if err := s.flushAll(); err != nil {
			s.log.Error("flush log blocks", "err", err)
		}
		s.applyRetention()
	}
}

// dropIdleSealBuffers lets the seal buffers go when no block was written
// since the last call (a minute before): a store taking logs slowly seals
// every few minutes and need not hold them in between.
func (s *Store) dropIdleSealBuffers() {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	if s.seals == 0 {
		s.sealBufs = nil
	}
	s.seals = 0
}

// flushAll seals every non-empty head under a new generation and writes
// the sealed heads into blocks, oldest first.
func (s *Store) flushAll() error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.sealMu.Lock()
	gen := s.gen
	s.mu.RLock()
	for _, idx := range s.indices {
		idx.mu.Lock()
		if idx.head.docs.len() > 0 {
			idx.head.gen = gen
			idx.sealed = append(idx.sealed, idx.head)
			idx.head = newHead(gen+1, s.mem)
		} else {
			idx.head.gen = gen + 1
		}
		idx.mu.Unlock()
	}
	s.mu.RUnlock()
	s.gen++
	if s.wal.cur != nil {
		if err := s.wal.rotate(s.gen); err != nil {
			s.gen--
			s.sealMu.Unlock()
			return err
		}
	}
	s.headBytes.Store(0)
	s.sealMu.Unlock()

	// Write every sealed head (including ones an earlier failure left).
	s.mu.RLock()
	all := make([]*index, 0, len(s.indices))
	for _, idx := range s.indices {
		all = append(all, idx)
	}
	s.mu.RUnlock()
	var firstErr error
	for _, idx := range all {
		for {
			idx.mu.Lock()
			if len(idx.sealed) == 0 || idx.deleted {
				idx.mu.Unlock()
				break
			}
			h := idx.sealed[0]
			idx.mu.Unlock()
			if s.sealBufs == nil {
				s.sealBufs = &sealBuffers{}
			}
			s.seals++
			blk, err := writeBlock(idx.dir, h, !s.opts.NoSync, s.sealBufs)
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("index %s: %w", idx.name, err)
				}
				break
			}
			blk.cache = s.cache
			idx.mu.Lock()
			if idx.deleted {
				idx.mu.Unlock()
				blk.release()
				break
			}
			idx.sealed = idx.sealed[1:]
			h.release() // the index's: searches may still hold it
			idx.blocks = append(idx.blocks, blk)
			if blk.gen > idx.maxGen {
				idx.maxGen = blk.gen
			}
			idx.mu.Unlock()
		}
	}
	if firstErr != nil {
		return firstErr
	}
	// Every generation up to gen is now in blocks.
	if s.wal.cur != nil {
		gens, err := walGens(s.opts.Dir)
		if err != nil {
			return err
		}
		for _, g := range gens {
			if g <= gen {
				if err := s.wal.removeGen(g); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// applyRetention drops blocks older than MaxAge, then the oldest blocks
// while the total exceeds MaxBytes.
func (s *Store) applyRetention() {
	type cand struct {
		idx *index
		blk *block
	}
	var all []cand
	var total int64
	s.mu.RLock()
	for _, idx := range s.indices {
		idx.mu.Lock()
		for _, b := range idx.blocks {
			all = append(all, cand{idx, b})
			total += b.size
		}
		idx.mu.Unlock()
	}
	s.mu.RUnlock()
	sort.Slice(all, func(i, j int) bool { return all[i].blk.maxTS < all[j].blk.maxTS })
	cutoff := int64(-1 << 63)
	if s.opts.MaxAge > 0 {
		cutoff = s.opts.Now().Add(-s.opts.MaxAge).UnixNano()
	}
	for _, c := range all {
		if c.blk.maxTS >= cutoff && (s.opts.MaxBytes <= 0 || total <= s.opts.MaxBytes) {
			break
		}
		total -= c.blk.size
		s.dropBlock(c.idx, c.blk)
	}
}

func (s *Store) dropBlock(idx *index, blk *block) {
	idx.mu.Lock()
	found := false
	for i, b := range idx.blocks {
		if b == blk {
			idx.blocks = append(idx.blocks[:i:i], idx.blocks[i+1:]...)
			found = true
			break
		}
	}
	if !found {
		// Dropped already (its index was deleted).
		idx.mu.Unlock()
		return
	}
	_ = idx.dropIDs(blk)
	idx.mu.Unlock()
	// Searches that hold the block keep its mapping (and so its pages)
	// until they end; the file may go now.
	blk.release()
	if err := os.Remove(blk.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("remove block", "path", blk.path, "err", err)
	}
	s.log.Debug("retention dropped block", "index", idx.name, "docs", blk.n)
}

// Close flushes heads into blocks and stops the store.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	close(s.stop)
	<-s.done
	err := s.flushAll()
	if cerr := s.wal.close(); err == nil {
		err = cerr
	}
	s.mu.Lock()
	for _, idx := range s.indices {
		idx.mu.Lock()
		idx.releaseBlocks()
		idx.mu.Unlock()
	}
	s.mu.Unlock()
	return err
}

func writeFileSync(path string, b []byte, fsync bool) error {
	af, err := createAtomic(path)
	if err != nil {
		return err
	}
	defer af.abort()
	af.write(b)
	return af.commit(fsync)
}

// atomicFile is a file written under a temporary name through a buffer
// and renamed to its name once complete (commit); abort removes what is
// left of an uncommitted one. The first write error is kept for commit.
type atomicFile struct {
	path, tmp string
	f         *os.File
	w         *bufio.Writer
	off       int64 // bytes written
	err       error
	done      bool
}

func createAtomic(path string) (*atomicFile, error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	return &atomicFile{path: path, tmp: tmp, f: f, w: bufio.NewWriterSize(f, 256<<10)}, nil
}

func (a *atomicFile) write(p []byte) {
	if a.err != nil {
		return
	}
	n, err := a.w.Write(p)
	a.off += int64(n)
	a.err = err
}

// Write makes an atomicFile an io.Writer (errors are kept for commit).
func (a *atomicFile) Write(p []byte) (int, error) {
	a.write(p)
	return len(p), nil
}

// commit flushes, optionally fsyncs, closes and renames the file (and
// fsyncs its folder with fsync).
func (a *atomicFile) commit(fsync bool) error {
	if a.err == nil {
		a.err = a.w.Flush()
	}
	if a.err == nil && fsync {
		a.err = a.f.Sync()
	}
	if err := a.f.Close(); a.err == nil {
		a.err = err
	}
	if a.err != nil {
		_ = os.Remove(a.tmp)
		a.done = true
		return a.err
	}
	a.done = true
	if err := os.Rename(a.tmp, a.path); err != nil {
		_ = os.Remove(a.tmp)
		return err
	}
	if fsync {
		return syncDir(filepath.Dir(a.path))
	}
	return nil
}

// abort closes and removes an uncommitted file (a no-op after commit).
func (a *atomicFile) abort() {
	if a.done {
		return
	}
	a.done = true
	_ = a.f.Close()
	_ = os.Remove(a.tmp)
}

// FlatFields parses a JSON object and calls fn with each flattened field:
// its path segments, its value (unescaped for strings, literal JSON
// otherwise) and whether it is a string. Nulls are skipped.
func FlatFields(src []byte, fn func(path [][]byte, value []byte, isString bool)) error {
	fl := flattenerPool.Get().(*flattener)
	defer flattenerPool.Put(fl)
	if err := fl.flatten(src); err != nil {
		return err
	}
	var segs [][]byte
	for _, f := range fl.fields {
		segs = segs[:0]
		p := f.path
		for {
			i := indexByte(p, pathSep)
			if i < 0 {
				segs = append(segs, p)
				break
			}
			segs = append(segs, p[:i])
			p = p[i+1:]
		}
		fn(segs, f.value, f.kind == kindString)
	}
	return nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}
