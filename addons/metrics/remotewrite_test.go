package metrics

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/encoding/protowire"
)

// rwSeries is one decoded TimeSeries: its labels in wire order and its
// single sample.
type rwSeries struct {
	labels [][2]string
	v      float64
	ts     int64
}

func (s rwSeries) key() string {
	var b strings.Builder
	for _, l := range s.labels {
		fmt.Fprintf(&b, "%s=%s,", l[0], l[1])
	}
	return b.String()
}

// decodeWriteRequest decodes a prompb.WriteRequest by hand, independently
// of the encoder.
func decodeWriteRequest(t *testing.T, b []byte) []rwSeries {
	t.Helper()
	var out []rwSeries
	fields := func(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte, u uint64)) {
		for len(b) > 0 {
			num, typ, n := protowire.ConsumeTag(b)
			if n < 0 {
				t.Fatalf("bad tag: %v", protowire.ParseError(n))
			}
			b = b[n:]
			switch typ {
			case protowire.BytesType:
				v, n := protowire.ConsumeBytes(b)
				if n < 0 {
					t.Fatal("bad bytes")
				}
				fn(num, typ, v, 0)
				b = b[n:]
			case protowire.Fixed64Type:
				u, n := protowire.ConsumeFixed64(b)
				fn(num, typ, nil, u)
				b = b[n:]
			case protowire.VarintType:
				u, n := protowire.ConsumeVarint(b)
				fn(num, typ, nil, u)
				b = b[n:]
			default:
				t.Fatalf("unexpected wire type %v", typ)
			}
		}
	}
	fields(b, func(num protowire.Number, _ protowire.Type, ts []byte, _ uint64) {
		if num != 1 {
			t.Fatalf("WriteRequest field %d", num)
		}
		var s rwSeries
		samples := 0
		fields(ts, func(num protowire.Number, _ protowire.Type, v []byte, _ uint64) {
			switch num {
			case 1:
				var l [2]string
				fields(v, func(num protowire.Number, _ protowire.Type, v []byte, _ uint64) { l[num-1] = string(v) })
				s.labels = append(s.labels, l)
			case 2:
				samples++
				fields(v, func(num protowire.Number, typ protowire.Type, _ []byte, u uint64) {
					switch {
					case num == 1 && typ == protowire.Fixed64Type:
						s.v = math.Float64frombits(u)
					case num == 2 && typ == protowire.VarintType:
						s.ts = int64(u)
					default:
						t.Fatalf("Sample field %d type %v", num, typ)
					}
				})
			default:
				t.Fatalf("TimeSeries field %d", num)
			}
		})
		if samples != 1 {
			t.Fatalf("%d samples in a series", samples)
		}
		out = append(out, s)
	})
	return out
}

// receiver is a loopback remote write endpoint: it checks the protocol's
// headers, decodes each request, and answers with the next status of its
// script (200 once the script runs out).
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	script []int
	tries  int
	ok     [][]rwSeries // accepted requests, in order
	auth   []string
	got    chan struct{}
}

func newReceiver(t *testing.T, script ...int) *receiver {
	r := &receiver{t: t, script: script, got: make(chan struct{}, 100)}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		for h, want := range map[string]string{"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf", "X-Prometheus-Remote-Write-Version": "0.1.0"} {
			if got := req.Header.Get(h); got != want {
				t.Errorf("%s: %q, want %q", h, got, want)
			}
		}
		if req.Method != http.MethodPost {
			t.Errorf("method %s", req.Method)
		}
		body, _ := io.ReadAll(req.Body)
		raw, err := snappy.Decode(nil, body)
		if err != nil {
			t.Errorf("not a snappy block: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		series := decodeWriteRequest(t, raw)
		r.mu.Lock()
		code := http.StatusOK
		if r.tries < len(r.script) {
			code = r.script[r.tries]
		}
		r.tries++
		r.auth = append(r.auth, req.Header.Get("Authorization"))
		if code/100 == 2 {
			r.ok = append(r.ok, series)
		}
		r.mu.Unlock()
		w.WriteHeader(code)
		r.got <- struct{}{}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) accepted() [][]rwSeries {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]rwSeries(nil), r.ok...)
}

// waitTries waits for n requests (of any outcome).
func (r *receiver) waitTries(n int) {
	r.t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		r.mu.Lock()
		tries := r.tries
		r.mu.Unlock()
		if tries >= n {
			return
		}
		select {
		case <-r.got:
		case <-deadline:
			r.t.Fatalf("%d remote write requests, want %d", tries, n)
		}
	}
}

// rwCollector is a collector over one node "n1" with one pod whose agent
// reports cpu seconds of usage, writing to rcv.
func rwCollector(t *testing.T, rcv *receiver, opts RemoteWriteOptions) (*Collector, *fakeAgents, *prometheus.Registry) {
	agents := newFakeAgents(t)
	reg := prometheus.NewPedanticRegistry()
	c := testCollector(t, agents.scraper(), nodeIndexer(t, "n1"), reg)
	opts.URL = rcv.srv.URL + "/api/v1/write"
	opts.MinBackoff, opts.MaxBackoff = 10*time.Millisecond, 50*time.Millisecond
	var err error
	if c.rw, err = newRemoteWriter(opts, reg, c.log); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.rw.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return c, agents, reg
}

func setRound(agents *fakeAgents, at time.Time, cpu float64) {
	agents.set("n1", summary("n1", at, cpu, 1<<30,
		podStats("apps", "db-0", at, cpu/10, 64<<20, pvcVolume("data", "apps", "data-db-0", at, 300<<20, 1<<30))))
}

// nodeCPU is the node_cpu_usage_seconds_total sample of a request.
func nodeCPU(t *testing.T, req []rwSeries) rwSeries {
	t.Helper()
	for _, s := range req {
		if s.labels[0] == [2]string{"__name__", "node_cpu_usage_seconds_total"} {
			return s
		}
	}
	t.Fatalf("no node_cpu_usage_seconds_total in %d series", len(req))
	return rwSeries{}
}

func TestRemoteWriteSeries(t *testing.T) {
	rcv := newReceiver(t)
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, agents, reg := rwCollector(t, rcv, RemoteWriteOptions{BearerTokenFile: tok})
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	setRound(agents, t0, 100)
	c.round(context.Background())
	rcv.waitTries(1)

	req := rcv.accepted()[0]
	got := map[string]rwSeries{}
	for _, s := range req {
		for i := 1; i < len(s.labels); i++ {
			if s.labels[i-1][0] >= s.labels[i][0] {
				t.Errorf("labels not sorted: %v", s.labels)
			}
		}
		got[s.key()] = s
	}
	for key, want := range map[string]float64{
		"__name__=node_cpu_usage_seconds_total,node=n1,":                                                100,
		"__name__=node_memory_working_set_bytes,node=n1,":                                               1 << 30,
		"__name__=container_cpu_usage_seconds_total,container=c,namespace=apps,node=n1,pod=db-0,":       10,
		"__name__=pod_memory_working_set_bytes,namespace=apps,node=n1,pod=db-0,":                        64 << 20,
		"__name__=kubelet_volume_stats_used_bytes,namespace=apps,persistentvolumeclaim=data-db-0,":      300 << 20,
		"__name__=kubelet_volume_stats_capacity_bytes,namespace=apps,persistentvolumeclaim=data-db-0,":  1 << 30,
		"__name__=kubelet_volume_stats_available_bytes,namespace=apps,persistentvolumeclaim=data-db-0,": 1<<30 - 300<<20 - 1,
	} {
		s, ok := got[key]
		if !ok {
			t.Errorf("no series %s", key)
			continue
		}
		if s.v != want || s.ts != t0.UnixMilli() {
			t.Errorf("%s = %v @%d, want %v @%d", key, s.v, s.ts, want, t0.UnixMilli())
		}
	}
	// The same series as /metrics (one sample each).
	if n := len(c.usage.current()); len(req) != n {
		t.Errorf("%d series written, %d on /metrics", len(req), n)
	}
	if a := rcv.auth[0]; a != "Bearer s3cret" {
		t.Errorf("Authorization %q", a)
	}
	if v := waitValue(c.rw.m.samples, float64(len(req))); v != float64(len(req)) {
		t.Errorf("samples metric %v, want %d", v, len(req))
	}
	if _, err := reg.Gather(); err != nil {
		t.Error(err)
	}
}

// A receiver answering 500 (twice) and 429 before it recovers loses
// nothing: every round arrives, in order, after retries.
func TestRemoteWriteRetriesInOrder(t *testing.T) {
	rcv := newReceiver(t, 500, 503, 429)
	c, agents, _ := rwCollector(t, rcv, RemoteWriteOptions{Username: "u"})
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	for i := 0; i < 3; i++ {
		setRound(agents, t0.Add(time.Duration(i)*15*time.Second), float64(100+10*i))
		c.round(context.Background())
	}
	rcv.waitTries(6)
	ok := rcv.accepted()
	if len(ok) != 3 {
		t.Fatalf("%d rounds accepted, want 3", len(ok))
	}
	for i, req := range ok {
		if s := nodeCPU(t, req); s.v != float64(100+10*i) || s.ts != t0.Add(time.Duration(i)*15*time.Second).UnixMilli() {
			t.Errorf("round %d: %v @%d", i, s.v, s.ts)
		}
	}
	if r := metricValue(c.rw.m.retries); r != 3 {
		t.Errorf("retries %v, want 3", r)
	}
	if d := metricValue(c.rw.m.dropped.WithLabelValues("rejected")) + metricValue(c.rw.m.dropped.WithLabelValues("queue_full")); d != 0 {
		t.Errorf("%v samples dropped", d)
	}
	if !strings.HasPrefix(rcv.auth[0], "Basic ") {
		t.Errorf("Authorization %q, want basic auth", rcv.auth[0])
	}
}

// A 4xx is not retried: the round is dropped, counted, and the next one
// is written.
func TestRemoteWriteDropsRejected(t *testing.T) {
	rcv := newReceiver(t, 400)
	c, agents, _ := rwCollector(t, rcv, RemoteWriteOptions{})
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	setRound(agents, t0, 100)
	c.round(context.Background())
	rcv.waitTries(1)
	setRound(agents, t0.Add(15*time.Second), 110)
	c.round(context.Background())
	rcv.waitTries(2)
	ok := rcv.accepted()
	if len(ok) != 1 || nodeCPU(t, ok[0]).v != 110 {
		t.Fatalf("accepted %d rounds", len(ok))
	}
	n := len(c.usage.current())
	if d := waitValue(c.rw.m.dropped.WithLabelValues("rejected"), float64(n)); d != float64(n) {
		t.Errorf("rejected samples %v, want %d", d, n)
	}
	if r := metricValue(c.rw.m.retries); r != 0 {
		t.Errorf("a 400 was retried %v times", r)
	}
}

// The queue is bounded: with the receiver down, the oldest waiting rounds
// are dropped and counted; the newest arrive once it is back.
func TestRemoteWriteQueueBound(t *testing.T) {
	block := make(chan struct{})
	rcv := newReceiver(t)
	inner := rcv.srv.Config.Handler
	first := true
	var mu sync.Mutex
	rcv.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		f := first
		first = false
		mu.Unlock()
		if f {
			<-block // the first request hangs until the test releases it
		}
		inner.ServeHTTP(w, r)
	})
	c, agents, _ := rwCollector(t, rcv, RemoteWriteOptions{QueueRounds: 2})
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	for i := 0; i < 5; i++ { // 1 in flight, 2 queued, 2 dropped
		setRound(agents, t0.Add(time.Duration(i)*15*time.Second), float64(100+10*i))
		c.round(context.Background())
		if i == 0 {
			waitValue(c.rw.m.queued, 0) // the first round is in flight
		}
	}
	close(block)
	rcv.waitTries(3)
	var got []float64
	for _, req := range rcv.accepted() {
		got = append(got, nodeCPU(t, req).v)
	}
	if fmt.Sprint(got) != "[100 130 140]" {
		t.Errorf("delivered %v, want [100 130 140]", got)
	}
	if d := metricValue(c.rw.m.dropped.WithLabelValues("queue_full")); d != float64(2*len(c.usage.current())) {
		t.Errorf("queue_full drops %v", d)
	}
}

// metricValue is a counter's or gauge's value.
func metricValue(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// waitValue waits up to 10 s for a metric (updated after the receiver
// answered) to reach want, and returns its value.
func waitValue(c prometheus.Metric, want float64) float64 {
	deadline := time.Now().Add(10 * time.Second)
	for metricValue(c) != want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	return metricValue(c)
}

// A round is written in requests of at most MaxSamplesPerSend samples, no
// more than Shards at once; every series arrives once per round, and a
// round's requests all end before the next round's begin (each series'
// samples arrive in time order).
func TestRemoteWriteBatchesRounds(t *testing.T) {
	rcv := newReceiver(t)
	inner := rcv.srv.Config.Handler
	var mu sync.Mutex
	inFlight, most := 0, 0
	rcv.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		mu.Unlock()
		time.Sleep(20 * time.Millisecond) // let the shards overlap
		inner.ServeHTTP(w, r)
		mu.Lock()
		inFlight--
		mu.Unlock()
	})
	const per, shards = 3, 2
	c, agents, _ := rwCollector(t, rcv, RemoteWriteOptions{MaxSamplesPerSend: per, Shards: shards})
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	setRound(agents, t0, 100)
	c.round(context.Background())
	setRound(agents, t0.Add(15*time.Second), 110)
	c.round(context.Background())
	n := len(c.usage.current())
	if n <= per {
		t.Fatalf("%d series: the test needs more than %d", n, per)
	}
	reqs := 2 * ((n + per - 1) / per)
	rcv.waitTries(reqs)
	seen := map[int64]map[string]int{}
	var lastTS int64
	for i, req := range rcv.accepted() {
		if len(req) > per {
			t.Errorf("request %d holds %d samples, want at most %d", i, len(req), per)
		}
		ts := req[0].ts
		if ts < lastTS {
			t.Errorf("request %d of round %d after a request of round %d", i, ts, lastTS)
		}
		lastTS = ts
		for _, s := range req {
			if s.ts != ts {
				t.Errorf("request %d mixes rounds %d and %d", i, ts, s.ts)
			}
			if seen[ts] == nil {
				seen[ts] = map[string]int{}
			}
			seen[ts][s.key()]++
		}
	}
	for _, round := range []time.Time{t0, t0.Add(15 * time.Second)} {
		got := seen[round.UnixMilli()]
		if len(got) != n {
			t.Errorf("round %v: %d series, want %d", round, len(got), n)
		}
		for k, c := range got {
			if c != 1 {
				t.Errorf("round %v: %s written %d times", round, k, c)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if most > shards {
		t.Errorf("%d requests in flight at once, want at most %d shards", most, shards)
	}
}
