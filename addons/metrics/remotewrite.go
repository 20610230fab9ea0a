package metrics

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protowire"
)

// RemoteWriteOptions configure Prometheus remote write (1.0) of the usage
// series (the ones on /metrics, UsageCollector): each scrape round is
// written in requests of at most MaxSamplesPerSend samples, up to Shards
// of them at once; rounds are written in order (a round's requests all
// end before the next round's start, so every series' samples arrive in
// time order). The zero value (no URL) is off.
type RemoteWriteOptions struct {
	// URL of the receiver's remote write endpoint (Prometheus:
	// /api/v1/write with --web.enable-remote-write-receiver).
	URL string
	// BearerTokenFile is read before every request (a rotated token is
	// picked up); Username with PasswordFile is basic auth instead.
	BearerTokenFile string
	Username        string
	PasswordFile    string
	// CAFile is a PEM bundle the receiver's certificate is checked against
	// (default: the system's roots).
	CAFile string
	// Client overrides the HTTP client (tests); CAFile is then ignored.
	Client *http.Client
	// Timeout of one request (default 30s).
	Timeout time.Duration
	// QueueRounds bounds the rounds waiting to be sent besides the one in
	// flight (default 8): while the receiver is down or slow, the oldest
	// waiting round is dropped.
	QueueRounds int
	// MinBackoff and MaxBackoff bound the wait between retries of a round
	// the receiver answered 5xx or 429 to, or did not answer (defaults 100ms
	// and 10s, doubling).
	MinBackoff, MaxBackoff time.Duration
	// MaxSamplesPerSend bounds one request (default 2000, Prometheus's
	// max_samples_per_send); Shards is how many requests of a round are in
	// flight at once (default 4).
	MaxSamplesPerSend int
	Shards            int
}

// Enabled reports whether remote write is configured.
func (o RemoteWriteOptions) Enabled() bool { return o.URL != "" }

// remoteWriter sends encoded rounds in order from a bounded queue.
type remoteWriter struct {
	opts   RemoteWriteOptions
	client *http.Client
	log    *slog.Logger
	m      *remoteWriteMetrics

	mu    sync.Mutex
	queue []writeRound
	wake  chan struct{}
	buf   []byte // encoder scratch (rounds are encoded one at a time)
}

// writeRound is one scrape round, in requests.
type writeRound []writeBatch

func (r writeRound) samples() (n int) {
	for _, b := range r {
		n += b.samples
	}
	return n
}

type writeBatch struct {
	body    []byte // snappy block of a WriteRequest
	samples int
}

type remoteWriteMetrics struct {
	samples  prometheus.Counter
	requests *prometheus.CounterVec
	retries  prometheus.Counter
	dropped  *prometheus.CounterVec
	queued   prometheus.Gauge
	bytes    prometheus.Counter
}

func newRemoteWriteMetrics(reg prometheus.Registerer) (*remoteWriteMetrics, error) {
	const ns, sub = "skiff", "metrics"
	m := &remoteWriteMetrics{
		samples: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "remote_write_samples_total",
			Help: "Samples the remote write receiver accepted."}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "remote_write_requests_total",
			Help: "Remote write requests by HTTP status code (\"error\" when no answer)."}, []string{"code"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "remote_write_retries_total",
			Help: "Remote write requests retried after a 5xx, a 429 or no answer."}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "remote_write_dropped_samples_total",
			Help: "Samples not written: rejected by the receiver (4xx) or dropped from a full queue."}, []string{"reason"}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "remote_write_queued_rounds",
			Help: "Scrape rounds waiting to be written."}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "remote_write_sent_bytes_total",
			Help: "Compressed bytes of accepted remote write requests."}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.samples, m.requests, m.retries, m.dropped, m.queued, m.bytes} {
		if err := registerUsage(reg, c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func newRemoteWriter(opts RemoteWriteOptions, reg prometheus.Registerer, log *slog.Logger) (*remoteWriter, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.QueueRounds <= 0 {
		opts.QueueRounds = 8
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(10*time.Second, opts.MinBackoff)
	}
	if opts.MaxSamplesPerSend <= 0 {
		opts.MaxSamplesPerSend = 2000
	}
	if opts.Shards <= 0 {
		opts.Shards = 4
	}
	if opts.BearerTokenFile != "" && opts.Username != "" {
		return nil, errors.New("remote write: a bearer token or basic auth, not both")
	}
	client := opts.Client
	if client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if opts.CAFile != "" {
			pem, err := os.ReadFile(opts.CAFile)
			if err != nil {
				return nil, fmt.Errorf("remote write CA: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("remote write CA %s: no certificates", opts.CAFile)
			}
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		client = &http.Client{Transport: tr}
	}
	m, err := newRemoteWriteMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &remoteWriter{opts: opts, client: client, log: log, m: m, wake: make(chan struct{}, 1)}, nil
}

// enqueue encodes a round's samples as WriteRequests of at most
// MaxSamplesPerSend samples and queues them, dropping the oldest waiting
// round when the queue is full.
func (w *remoteWriter) enqueue(samples []sample, now time.Time) {
	if len(samples) == 0 {
		return
	}
	var round writeRound
	for chunk := range slices.Chunk(samples, w.opts.MaxSamplesPerSend) {
		w.buf = encodeWriteRequest(w.buf[:0], chunk, now)
		round = append(round, writeBatch{body: snappy.Encode(nil, w.buf), samples: len(chunk)})
	}
	w.mu.Lock()
	if len(w.queue) >= w.opts.QueueRounds {
		n := w.queue[0].samples()
		w.m.dropped.WithLabelValues("queue_full").Add(float64(n))
		w.log.Warn("remote write queue full: dropping the oldest round", "samples", n)
		w.queue = w.queue[1:]
	}
	w.queue = append(w.queue, round)
	w.m.queued.Set(float64(len(w.queue)))
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// run sends queued rounds in order until ctx ends. The round being sent
// has left the queue: a full queue drops the oldest waiting one.
func (w *remoteWriter) run(ctx context.Context) {
	for {
		w.mu.Lock()
		var r writeRound
		ok := len(w.queue) > 0
		if ok {
			r = w.queue[0]
			w.queue = w.queue[1:]
			w.m.queued.Set(float64(len(w.queue)))
		}
		w.mu.Unlock()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-w.wake:
				continue
			}
		}
		w.deliverRound(ctx, r)
		if ctx.Err() != nil {
			return
		}
	}
}

// deliverRound writes a round's requests, up to Shards at once, and
// returns when every one was accepted, rejected or ctx ended.
func (w *remoteWriter) deliverRound(ctx context.Context, r writeRound) {
	if len(r) == 1 {
		w.deliver(ctx, r[0])
		return
	}
	sem := make(chan struct{}, w.opts.Shards)
	var wg sync.WaitGroup
	for _, b := range r {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			w.deliver(ctx, b)
		})
	}
	wg.Wait()
}

// errRecoverable marks a failure worth retrying (5xx, 429, no answer).
var errRecoverable = errors.New("recoverable")

// deliver sends one request, retrying recoverable failures with backoff
// until it is accepted, rejected or ctx ends.
func (w *remoteWriter) deliver(ctx context.Context, r writeBatch) {
	backoff := w.opts.MinBackoff
	for {
		err := w.send(ctx, r)
		switch {
		case err == nil:
			w.m.samples.Add(float64(r.samples))
			w.m.bytes.Add(float64(len(r.body)))
			return
		case !errors.Is(err, errRecoverable):
			w.m.dropped.WithLabelValues("rejected").Add(float64(r.samples))
			w.log.Warn("remote write rejected: request dropped", "samples", r.samples, "err", err)
			return
		}
		w.m.retries.Inc()
		w.log.Debug("remote write failed, retrying", "backoff", backoff, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, w.opts.MaxBackoff)
	}
}

func (w *remoteWriter) send(ctx context.Context, r writeBatch) error {
	ctx, cancel := context.WithTimeout(ctx, w.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.opts.URL, bytes.NewReader(r.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	req.Header.Set("User-Agent", "skiff-metrics")
	switch {
	case w.opts.BearerTokenFile != "":
		tok, err := os.ReadFile(w.opts.BearerTokenFile)
		if err != nil {
			return fmt.Errorf("bearer token: %w: %w", err, errRecoverable)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	case w.opts.Username != "":
		var pw []byte
		if w.opts.PasswordFile != "" {
			if pw, err = os.ReadFile(w.opts.PasswordFile); err != nil {
				return fmt.Errorf("password: %w: %w", err, errRecoverable)
			}
		}
		req.SetBasicAuth(w.opts.Username, strings.TrimRight(string(pw), "\r\n"))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		w.m.requests.WithLabelValues("error").Inc()
		return fmt.Errorf("remote write: %w: %w", err, errRecoverable)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	w.m.requests.WithLabelValues(strconv.Itoa(resp.StatusCode)).Inc()
	switch c := resp.StatusCode; {
	case c/100 == 2:
		return nil
	case c/100 == 5 || c == http.StatusTooManyRequests:
		return fmt.Errorf("remote write: %s: %s: %w", resp.Status, bytes.TrimSpace(msg), errRecoverable)
	default:
		return fmt.Errorf("remote write: %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
}

// Field numbers of prompb (Prometheus remote write 1.0): WriteRequest
// {timeseries=1}, TimeSeries {labels=1, samples=2}, Label {name=1,
// value=2}, Sample {value=1 (double), timestamp=2 (int64 ms)}.
const (
	fieldTimeseries  = 1
	fieldLabels      = 1
	fieldSamples     = 2
	fieldLabelName   = 1
	fieldLabelValue  = 2
	fieldSampleValue = 1
	fieldSampleTime  = 2
)

const nameLabel = "__name__"

func labelSize(name, value string) int {
	return 1 + protowire.SizeBytes(len(name)) + 1 + protowire.SizeBytes(len(value))
}

func appendLabel(b []byte, name, value string) []byte {
	b = protowire.AppendTag(b, fieldLabels, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(labelSize(name, value)))
	b = protowire.AppendTag(b, fieldLabelName, protowire.BytesType)
	b = protowire.AppendString(b, name)
	b = protowire.AppendTag(b, fieldLabelValue, protowire.BytesType)
	return protowire.AppendString(b, value)
}

// encodeWriteRequest appends a prompb.WriteRequest with one TimeSeries of
// one sample per sample (labels sorted by name, __name__ first). Samples
// without a time get now.
func encodeWriteRequest(b []byte, samples []sample, now time.Time) []byte {
	for i := range samples {
		s := &samples[i]
		ts := s.ts
		if ts == 0 {
			ts = now.UnixMilli()
		}
		sampleSize := 1 + 8 + 1 + protowire.SizeVarint(uint64(ts))
		size := 1 + protowire.SizeBytes(labelSize(nameLabel, s.fam.name)) + 1 + protowire.SizeBytes(sampleSize)
		for j, l := range s.fam.labels {
			size += 1 + protowire.SizeBytes(labelSize(l, *s.lv[j]))
		}
		b = protowire.AppendTag(b, fieldTimeseries, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(size))
		b = appendLabel(b, nameLabel, s.fam.name)
		for j, l := range s.fam.labels {
			b = appendLabel(b, l, *s.lv[j])
		}
		b = protowire.AppendTag(b, fieldSamples, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(sampleSize))
		b = protowire.AppendTag(b, fieldSampleValue, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(s.v))
		b = protowire.AppendTag(b, fieldSampleTime, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(ts))
	}
	return b
}
