package shipper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
)

// maxDeadLetter bounds the dead-letter file; beyond it rejected lines are
// only counted.
const maxDeadLetter = 64 << 20

// sink ships documents in _bulk requests it builds itself: each document
// is appended to a batch (its action line and body, in one pass, into a
// buffer the batch keeps), and a full batch (FlushBytes) or the one filling
// when FlushInterval ticks is sent by one of two workers with
// go-elasticsearch's Bulk API. What fails is retried one document at a
// time, so a rejected line never holds back the lines around it.
type sink struct {
	s  *Shipper
	es *elasticsearch.Client

	flushBytes int
	// mu guards cur, the batch being filled (nil: take one from free).
	mu  sync.Mutex
	cur *batch
	// free holds the batches not in use and full those waiting for a
	// worker: one per worker (Config.BulkWorkers send requests
	// concurrently, as the bulk indexer's workers did) and one filling, so
	// a send to full never blocks and a sender waits on free while every
	// batch is full or in flight.
	free, full chan *batch
	// lastFull is when a batch was last sent for being full (mu).
	lastFull  time.Time
	stopTick  chan struct{}
	tickDone  chan struct{}
	workers   sync.WaitGroup
	closeOnce sync.Once

	shipped, duplicates, deadLettered, retries atomic.Int64

	dlMu   sync.Mutex
	dlPath string

	// closeMu orders sends (retries included) before close.
	closeMu sync.RWMutex
	closed  bool
}

// batch is one _bulk request being built or sent: its body and, per
// document in order, the document and where its body lies in buf.
type batch struct {
	buf   []byte
	docs  []*doc
	spans []span
	items []bulkItem // the decoded response (reused)
}

type span struct{ start, end int }

// close flushes what is batched, waits for the requests in flight (until
// ctx ends) and stops the workers; later sends and retries are dropped
// (their lines were not checkpointed).
func (k *sink) close(ctx context.Context) {
	k.closeMu.Lock()
	k.closed = true
	k.closeMu.Unlock()
	k.closeOnce.Do(func() {
		close(k.stopTick)
		<-k.tickDone
		k.mu.Lock()
		if b := k.cur; b != nil {
			k.cur = nil
			k.full <- b
		}
		k.mu.Unlock()
		close(k.full)
	})
	done := make(chan struct{})
	go func() {
		k.workers.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// doc is one document and its delivery state. Until its first send it
// holds its rendered body in the tailer's buffer (send copies it into a
// batch); afterwards only a document that failed holds a copy of its body
// (for a retry, the raw-text fallback and the dead-letter file).
type doc struct {
	t   *tailer
	e   *entry
	ent entry // what e points to
	// index and action are the metadata's (shared, not copied): action is
	// the action line up to the ID, `{"create":{"_index":"…","_id":"`.
	index    string
	action   []byte
	id       [32]byte // docIDFrom, hex
	body     []byte
	rawEnd   int   // body[:rawEnd]+"}" is the document without lifted fields
	weight   int64 // what the document holds of the in-flight byte budget
	lifted   bool
	attempts int // rejections so far
	failures int // transient failures in a row (backoff)
}

// docOverhead is what a document in flight costs beyond its body: the
// doc, its entry, its action line in a batch.
const docOverhead = 512

// newDoc renders rec's document (with its JSON body lifted) into buf,
// which the document's body points into until it is sent.
func newDoc(t *tailer, rec *logLine, meta *Meta, buf *bytes.Buffer) *doc {
	d := &doc{t: t}
	d.e = &d.ent
	d.index, d.action = meta.actionLine()
	appendDocID(d.id[:0], t.idPrefix, rec.offset)
	d.lifted, d.rawEnd = encode(buf, rec, meta, true)
	d.body = buf.Bytes()
	return d
}

// size is what d counts for against MaxInFlightBytes.
func (d *doc) size() int64 { return int64(len(d.body)) + docOverhead }

func newSink(s *Shipper) (*sink, error) {
	tc, err := s.cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	var tr http.RoundTripper = &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tc,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}
	if s.cfg.Transport != nil {
		tr = s.cfg.Transport
	}
	client, err := elasticsearch.NewClient(elasticsearch.Config{
		Addresses: []string{s.cfg.URL},
		APIKey:    s.cfg.APIKey, Username: s.cfg.Username, Password: s.cfg.Password,
		Header:    s.cfg.Header,
		Transport: tr,
		// Whole requests are retried by the transport on 429/502/503/504
		// and connection errors; documents that still fail are retried by
		// the sink (retry below).
		RetryOnStatus: []int{429, 502, 503, 504},
		MaxRetries:    3,
		RetryBackoff:  func(attempt int) time.Duration { return backoff(attempt) },
		// gzip costs the shipper a fifth of its CPU and the store its
		// decompression; it saves bandwidth only off this host.
		CompressRequestBody: !loopbackURL(s.cfg.URL),
	})
	if err != nil {
		return nil, fmt.Errorf("shipper: elasticsearch client: %w", err)
	}
	k := &sink{s: s, es: client, dlPath: filepath.Join(s.cfg.StateDir, "deadletter.log"),
		flushBytes: s.cfg.FlushBytes,
		free:       make(chan *batch, s.cfg.BulkWorkers+1), full: make(chan *batch, s.cfg.BulkWorkers+1),
		stopTick: make(chan struct{}), tickDone: make(chan struct{})}
	for range s.cfg.BulkWorkers + 1 {
		k.free <- &batch{}
	}
	for range s.cfg.BulkWorkers {
		k.workers.Add(1)
		go k.worker()
	}
	go k.ticker(s.cfg.FlushInterval)
	return k, nil
}

// bulkFilterPath is the filter_path of the shipper's _bulk requests.
var bulkFilterPath = []string{"errors", "items.*.status", "items.*.error"}

// loopbackURL reports whether rawURL's host is this host's loopback.
func loopbackURL(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// backoff is 250ms doubling to 30s, with ±20% jitter.
func backoff(attempt int) time.Duration {
	d := 250 * time.Millisecond
	for i := 1; i < attempt && d < 30*time.Second; i++ {
		d *= 2
	}
	d = min(d, 30*time.Second)
	return d + time.Duration((rand.Float64()-0.5)*0.4*float64(d))
}

// send appends d to the batch being filled; a full batch goes to the
// workers. It waits while every batch is full or in flight (the workers
// are busy), as the bulk indexer's Add did, until ctx ends.
func (k *sink) send(ctx context.Context, d *doc) {
	k.closeMu.RLock()
	defer k.closeMu.RUnlock()
	if k.closed {
		k.s.release(d)
		return
	}
	need := bulkItemSize(d)
	k.mu.Lock()
	for {
		if b := k.cur; b != nil {
			if len(b.docs) == 0 || len(b.buf)+need <= k.flushBytes {
				break
			}
			k.cur, k.lastFull = nil, time.Now()
			k.full <- b // never blocks: full holds every batch
			continue
		}
		select {
		case k.cur = <-k.free:
			continue
		default:
		}
		k.mu.Unlock()
		var b *batch
		select {
		case b = <-k.free:
		case <-ctx.Done():
			// The shipper is stopping: the entry stays unacknowledged and
			// is read again after a restart.
			k.s.release(d)
			return
		}
		k.mu.Lock()
		if k.cur == nil {
			k.cur = b
		} else {
			k.free <- b // never blocks: it came from free
		}
	}
	b := k.cur
	var sp span
	b.buf, sp = appendBulkItem(b.buf, d)
	b.docs = append(b.docs, d)
	b.spans = append(b.spans, sp)
	// The body was copied: the tailer reuses its bytes.
	d.body = nil
	if len(b.buf) >= k.flushBytes {
		k.cur, k.lastFull = nil, time.Now()
		k.full <- b
	}
	k.mu.Unlock()
}

// idle is told when every tailer has read to the end of its file. Just
// after a burst (a batch was sent full within the last FlushInterval) the
// batch being filled is sent at once: the burst's last lines need not
// wait for the tick. A quiet node's occasional lines still wait for it, a
// few to a request.
func (k *sink) idle() {
	k.mu.Lock()
	if b := k.cur; b != nil && len(b.docs) > 0 && time.Since(k.lastFull) < k.s.cfg.FlushInterval {
		k.cur = nil
		k.full <- b
	}
	k.mu.Unlock()
}

// appendBulkItem appends d's action line and body to a _bulk body:
// {"create":{"_index":"…","_id":"…"}}\n<body>\n; sp is where the body lies.
func appendBulkItem(buf []byte, d *doc) ([]byte, span) {
	buf = append(buf, d.action...)
	buf = append(buf, d.id[:]...)
	buf = append(buf, "\"}}\n"...)
	sp := span{start: len(buf)}
	buf = append(buf, d.body...)
	sp.end = len(buf)
	return append(buf, '\n'), sp
}

// bulkItemSize is what appendBulkItem appends for d.
func bulkItemSize(d *doc) int { return len(d.action) + len(d.id) + len("\"}}\n") + len(d.body) + 1 }

// ticker hands the batch being filled to the workers every interval.
func (k *sink) ticker(interval time.Duration) {
	defer close(k.tickDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-k.stopTick:
			return
		case <-t.C:
		}
		k.mu.Lock()
		if b := k.cur; b != nil && len(b.docs) > 0 {
			k.cur = nil
			k.full <- b
		}
		k.mu.Unlock()
	}
}

// worker sends the full batches until close.
func (k *sink) worker() {
	defer k.workers.Done()
	for b := range k.full {
		if len(b.docs) > 0 {
			k.flush(b)
		}
		// A batch grown by an oversized document does not keep its buffer.
		if cap(b.buf) > 2*k.flushBytes {
			b.buf = nil
		}
		b.buf = b.buf[:0]
		clear(b.docs)
		b.docs, b.spans, b.items = b.docs[:0], b.spans[:0], b.items[:0]
		k.free <- b
	}
}

// errMissingItem fails the documents a _bulk response has no item for.
var errMissingItem = errors.New("bulk response: fewer items than documents")

// flush sends one batch and settles each document by its item in the
// response (matched by position): 201 (and any status up to 201 without
// an error) is shipped, anything else goes to failed, as does every
// document when the request fails as a whole (transport error, an error
// status after the client's retries, an unreadable response).
func (k *sink) flush(b *batch) {
	ctx := k.s.sendCtx
	err := k.request(b)
	if err != nil {
		k.s.log.Debug("bulk request failed", "err", err)
	}
	var weight int64
	var n int
	for i, d := range b.docs {
		var it bulkItem
		derr := err
		if derr == nil {
			if i < len(b.items) {
				it = b.items[i]
			} else {
				derr = errMissingItem
			}
		}
		if derr == nil && it.ok() {
			k.shipped.Add(1)
			k.s.m.shipped.Inc()
			d.t.ack(d.e)
			weight += d.weight
			d.weight = 0
			n++
			continue
		}
		if derr != nil || it.Status != http.StatusConflict {
			// Retried or dead-lettered: it needs its body again.
			sp := b.spans[i]
			d.body = bytes.Clone(b.buf[sp.start:sp.end])
		}
		k.failed(ctx, d, it, derr)
	}
	// One release for the batch: a tailer waiting for room wakes once.
	k.s.releaseN(weight, n)
}

// request sends b's body with the client's Bulk API and decodes the
// response's items into b.items.
func (k *sink) request(b *batch) error {
	res, err := k.es.Bulk(bytes.NewReader(b.buf), k.es.Bulk.WithFilterPath(bulkFilterPath...))
	if err != nil {
		return fmt.Errorf("bulk request: %w", err)
	}
	defer res.Body.Close()
	if res.IsError() {
		return fmt.Errorf("bulk request: %s", res.String())
	}
	b.items, err = readBulkResponse(res.Body, b.items[:0])
	return err
}

func (k *sink) done(d *doc) {
	d.t.ack(d.e)
	k.s.release(d)
}

// failed decides what happens to a document the bulk request did not
// create: a duplicate is done; transport errors, 429 and 5xx are retried
// with backoff for as long as it takes (the shipper stops reading
// meanwhile); a rejection is retried as raw text if fields were lifted,
// then MaxAttempts times, then dead-lettered.
func (k *sink) failed(ctx context.Context, d *doc, res bulkItem, err error) {
	switch {
	case err == nil && res.Status == http.StatusConflict:
		k.duplicates.Add(1)
		k.s.m.duplicates.Inc()
		k.done(d)
		return
	case err != nil || res.Status == 0 || res.Status == http.StatusTooManyRequests || res.Status >= 500:
		d.failures++
		k.retry(ctx, d, backoff(d.failures))
		return
	}
	d.failures = 0
	d.attempts++
	if d.lifted {
		// Lifted fields can clash with the index's mapping: the line
		// itself is never the problem, so send it as raw text.
		d.body, d.lifted = rawBody(d.body, d.rawEnd), false
		k.s.m.rawFallbacks.Inc()
		k.retry(ctx, d, 0)
		return
	}
	if d.attempts < k.s.cfg.MaxAttempts {
		k.retry(ctx, d, backoff(d.attempts))
		return
	}
	k.deadLetter(d, fmt.Sprintf("%d %s: %s", res.Status, res.ErrType, res.ErrReason))
	k.done(d)
}

// retry sends d again after delay, from its own goroutine (never from the
// worker, which would block its requests).
func (k *sink) retry(ctx context.Context, d *doc, delay time.Duration) {
	k.retries.Add(1)
	k.s.m.retries.Inc()
	time.AfterFunc(delay, func() {
		if ctx.Err() != nil {
			k.s.release(d)
			return
		}
		k.send(ctx, d)
	})
}

// deadLetter appends a rejected document to <state>/deadletter.log (one
// JSON line with the reason) while the file is under maxDeadLetter.
func (k *sink) deadLetter(d *doc, reason string) {
	k.deadLettered.Add(1)
	k.s.m.deadLettered.Inc()
	k.s.log.Warn("log line rejected by the sink, dead-lettered", "index", d.index, "id", string(d.id[:]), "reason", reason)
	k.dlMu.Lock()
	defer k.dlMu.Unlock()
	if st, err := os.Stat(k.dlPath); err == nil && st.Size() > maxDeadLetter {
		return
	}
	f, err := os.OpenFile(k.dlPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	var b bytes.Buffer
	b.WriteString(`{"index":`)
	writeString(&b, d.index)
	b.WriteString(`,"id":`)
	writeString(&b, string(d.id[:]))
	b.WriteString(`,"reason":`)
	writeString(&b, reason)
	b.WriteString(`,"doc":`)
	b.Write(d.body)
	b.WriteString("}\n")
	_, _ = f.Write(b.Bytes())
}

// Stats returns the shipper's counters.
func (s *Shipper) Stats() Stats {
	used, peak := s.bytes.usage()
	return Stats{
		Shipped: s.sink.shipped.Load(), Duplicates: s.sink.duplicates.Load(), DeadLettered: s.sink.deadLettered.Load(),
		Retries: s.sink.retries.Load(), Dropped: s.dropped.Load(), InFlightBytes: used, PeakInFlightBytes: peak,
	}
}
