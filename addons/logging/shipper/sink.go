package shipper

import (
	"bytes"
	"context"
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
	"github.com/elastic/go-elasticsearch/v8/esutil"
)

// maxDeadLetter bounds the dead-letter file; beyond it rejected lines are
// only counted.
const maxDeadLetter = 64 << 20

// sink ships documents through go-elasticsearch's bulk indexer and
// retries what fails, one document at a time, so a rejected line never
// holds back the lines around it.
type sink struct {
	s  *Shipper
	es *elasticsearch.Client
	bi esutil.BulkIndexer

	shipped, duplicates, deadLettered, retries atomic.Int64

	dlMu   sync.Mutex
	dlPath string

	// closeMu orders retries (send) before the indexer's Close.
	closeMu sync.RWMutex
	closed  bool
}

// close flushes what the indexer holds (until ctx ends) and stops it;
// later retries are dropped (their lines were not checkpointed).
func (k *sink) close(ctx context.Context) {
	k.closeMu.Lock()
	k.closed = true
	k.closeMu.Unlock()
	_ = k.bi.Close(ctx)
}

// doc is one document and its delivery state. It holds its rendered body
// only (not the line it was rendered from, whose bytes the tailer reuses):
// the raw-text fallback is the body without its lifted fields.
type doc struct {
	t        *tailer
	e        *entry
	index    string
	id       string
	body     []byte
	rawEnd   int   // body[:rawEnd]+"}" is the document without lifted fields
	weight   int64 // what the document holds of the in-flight byte budget
	lifted   bool
	attempts int // rejections so far
	failures int // transient failures in a row (backoff)
}

// docOverhead is what a document in flight costs beyond its body: the
// doc, its entry, the bulk indexer's item with its action line, the ID.
const docOverhead = 512

// newDoc renders rec's document (with its JSON body lifted).
func newDoc(t *tailer, e *entry, rec *logLine, meta *Meta) *doc {
	index := meta.index
	if index == "" {
		index = IndexPrefix + meta.NamespaceName
	}
	d := &doc{t: t, e: e, index: index, id: docIDFrom(t.idPrefix, rec.offset)}
	var buf bytes.Buffer
	d.lifted, d.rawEnd = encode(&buf, rec, meta, true)
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
	k := &sink{s: s, es: client, dlPath: filepath.Join(s.cfg.StateDir, "deadletter.log")}
	k.bi, err = esutil.NewBulkIndexer(esutil.BulkIndexerConfig{
		Client:        client,
		NumWorkers:    2,
		FlushBytes:    s.cfg.FlushBytes,
		FlushInterval: s.cfg.FlushInterval,
		// A compact response: only what sink.failed reads. Every item keeps
		// its status, so the items stay in request order (the indexer
		// matches them by position). Elasticsearch and the embedded store
		// honour it; a sink that ignores it answers in full.
		FilterPath: bulkFilterPath,
		Decoder:    bulkDecoder{},
		OnError: func(_ context.Context, err error) {
			s.log.Debug("bulk request failed", "err", err)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("shipper: bulk indexer: %w", err)
	}
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

func (k *sink) send(ctx context.Context, d *doc) {
	k.closeMu.RLock()
	defer k.closeMu.RUnlock()
	if k.closed {
		k.s.release(d)
		return
	}
	err := k.bi.Add(ctx, esutil.BulkIndexerItem{
		Index: d.index, Action: "create", DocumentID: d.id, Body: bytes.NewReader(d.body),
		OnSuccess: func(context.Context, esutil.BulkIndexerItem, esutil.BulkIndexerResponseItem) {
			k.shipped.Add(1)
			k.s.m.shipped.Inc()
			k.done(d)
		},
		OnFailure: func(_ context.Context, _ esutil.BulkIndexerItem, res esutil.BulkIndexerResponseItem, err error) {
			k.failed(ctx, d, res, err)
		},
	})
	if err != nil {
		// The shipper is stopping: the entry stays unacknowledged and is
		// read again after a restart.
		k.s.release(d)
	}
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
func (k *sink) failed(ctx context.Context, d *doc, res esutil.BulkIndexerResponseItem, err error) {
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
	k.deadLetter(d, fmt.Sprintf("%d %s: %s", res.Status, res.Error.Type, res.Error.Reason))
	k.done(d)
}

// retry sends d again after delay, from its own goroutine (never from the
// bulk indexer's callback, which would block its worker).
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
	k.s.log.Warn("log line rejected by the sink, dead-lettered", "index", d.index, "id", d.id, "reason", reason)
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
	writeString(&b, d.id)
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
