package shipper

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/nodeagent/crilog"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// bulkSink is a fake Elasticsearch _bulk endpoint: it answers each create
// with decide's status (201 by default) after delay, and keeps the
// documents it created by ID.
type bulkSink struct {
	delay  time.Duration
	decide func(doc map[string]any) int

	mu       sync.Mutex
	docs     map[string]map[string]any
	requests int
	maxBody  int
	// inFlight counts the _bulk requests being answered; maxInFlight is
	// its highest.
	inFlight, maxInFlight int
}

func newBulkSink(t *testing.T, delay time.Duration, decide func(map[string]any) int) (*httptest.Server, *bulkSink) {
	k := &bulkSink{delay: delay, decide: decide, docs: map[string]map[string]any{}}
	srv := httptest.NewServer(k)
	t.Cleanup(srv.Close)
	return srv, k
}

func (k *bulkSink) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, ok := esRequest(w, req)
	if !ok {
		return
	}
	if !strings.HasSuffix(req.URL.Path, "/_bulk") {
		_, _ = w.Write([]byte(`{"version":{"number":"8.15.0"}}`))
		return
	}
	k.mu.Lock()
	k.inFlight++
	k.maxInFlight = max(k.maxInFlight, k.inFlight)
	k.mu.Unlock()
	time.Sleep(k.delay)
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 8<<20)
	var items []string
	k.mu.Lock()
	defer k.mu.Unlock()
	k.inFlight--
	k.requests++
	k.maxBody = max(k.maxBody, len(b))
	for sc.Scan() {
		var action map[string]struct {
			Index string `json:"_index"`
			ID    string `json:"_id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &action); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		a := action["create"]
		sc.Scan()
		var doc map[string]any
		if err := json.Unmarshal(sc.Bytes(), &doc); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		status := 201
		if k.decide != nil {
			status = k.decide(doc)
		}
		switch {
		case status == 201 && k.docs[a.ID] != nil:
			status = 409
		case status == 201:
			k.docs[a.ID] = doc
		}
		if status >= 300 {
			items = append(items, fmt.Sprintf(`{"create":{"_index":%q,"_id":%q,"status":%d,"error":{"type":"test_exception","reason":"answered %d"}}}`, a.Index, a.ID, status, status))
			continue
		}
		items = append(items, fmt.Sprintf(`{"create":{"_index":%q,"_id":%q,"status":%d}}`, a.Index, a.ID, status))
	}
	fmt.Fprintf(w, `{"took":1,"errors":false,"items":[%s]}`, strings.Join(items, ","))
}

// messages returns the message of every document created, by ID.
func (k *bulkSink) messages() map[string]string {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[string]string, len(k.docs))
	for id, d := range k.docs {
		out[id], _ = d["message"].(string)
	}
	return out
}

// pendingDocs is how many documents the shipper's tailers have read and
// not yet seen acknowledged (their own count, not the byte budget's).
func (s *Shipper) pendingDocs() int {
	s.mu.Lock()
	ts := make([]*tailer, 0, len(s.tailers))
	for _, t := range s.tailers {
		ts = append(ts, t)
	}
	s.mu.Unlock()
	n := 0
	for _, t := range ts {
		t.mu.Lock()
		for _, e := range t.pending[t.head:] {
			if !e.acked { // acknowledged entries behind an unacknowledged one hold no document
				n++
			}
		}
		t.mu.Unlock()
	}
	return n
}

// TestInFlightBytesBound ships large lines from two containers through a
// slow sink that answers 429 to the first attempt of every document: each
// waits in its retry backoff while the tailers could read on, so only the
// byte bound stops them. The documents read but not acknowledged must stay
// within MaxInFlightBytes all along (the shipper stops reading instead of
// holding more), the bulk requests within FlushBytes, and every line must
// arrive, exactly once, with its own text.
func TestInFlightBytesBound(t *testing.T) {
	const (
		lines    = 300
		lineSize = 8 << 10
		bound    = 256 << 10
		flush    = 32 << 10
	)
	var mu sync.Mutex
	tried := map[string]bool{}
	srv, sink := newBulkSink(t, 10*time.Millisecond, func(doc map[string]any) int {
		mu.Lock()
		defer mu.Unlock()
		msg, _ := doc["message"].(string)
		if !tried[msg] {
			tried[msg] = true
			return http.StatusTooManyRequests
		}
		return http.StatusCreated
	})
	root := t.TempDir()
	logDir := filepath.Join(root, "logs")
	pod := testPod()
	for c := range 2 {
		w, err := crilog.Open(filepath.Join(logDir, "ns1_web-0_uid-1", fmt.Sprintf("app%d", c), "0.log"))
		if err != nil {
			t.Fatal(err)
		}
		for i := range lines {
			fmt.Fprintf(w.Stream(crilog.Stdout), "c%d line %06d %s\n", c, i, strings.Repeat("x", lineSize))
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	r := startShipper(t, Config{
		PodLogDir: logDir, StateDir: filepath.Join(root, "state"), NodeName: "node-a", URL: srv.URL,
		Pod:          func(types.UID) *corev1.Pod { return pod },
		PollInterval: 10 * time.Millisecond, FlushInterval: 50 * time.Millisecond,
		FlushBytes: flush, MaxInFlightBytes: bound,
	})
	// The tailers' own count of unacknowledged documents, sampled: each
	// weighs more than lineSize, so at most bound/lineSize fit.
	maxPending := 0
	deadline := time.Now().Add(2 * time.Minute)
	for len(sink.messages()) < 2*lines && time.Now().Before(deadline) {
		maxPending = max(maxPending, r.s.pendingDocs())
		time.Sleep(2 * time.Millisecond)
	}
	got := sink.messages()
	if len(got) != 2*lines {
		t.Fatalf("%d of %d lines arrived", len(got), 2*lines)
	}
	seen := map[string]bool{}
	for _, msg := range got {
		f := strings.Fields(msg)
		if len(f) != 4 || len(f[3]) != lineSize {
			t.Fatalf("message %.60q... mangled", msg)
		}
		seen[f[0]+" "+f[2]] = true
	}
	if len(seen) != 2*lines {
		t.Fatalf("%d distinct lines of %d", len(seen), 2*lines)
	}
	if limit := bound / lineSize; maxPending > limit || maxPending == 0 {
		t.Fatalf("up to %d documents pending, want 1..%d (%d bytes / %d-byte lines)", maxPending, limit, bound, lineSize)
	}
	st := r.s.Stats()
	if st.PeakInFlightBytes > bound || st.PeakInFlightBytes < bound/2 {
		t.Fatalf("peak in-flight bytes %d: want within the bound %d (and near it, the sink refusing first attempts)", st.PeakInFlightBytes, bound)
	}
	if st.Retries < 2*lines {
		t.Fatalf("%d retries: the sink's 429s were not retried per document", st.Retries)
	}
	sink.mu.Lock()
	maxBody := sink.maxBody
	sink.mu.Unlock()
	if maxBody > flush+2*lineSize {
		t.Fatalf("a bulk request of %d bytes, FlushBytes is %d", maxBody, flush)
	}
	if st.InFlightBytes != 0 && r.s.pendingDocs() == 0 {
		t.Fatalf("%d bytes still held with nothing pending", st.InFlightBytes)
	}
}

// TestOversizeLineShippedAlone: a line larger than the whole in-flight
// bound is shipped (alone) rather than blocking its tailer for ever.
func TestOversizeLineShippedAlone(t *testing.T) {
	srv, sink := newBulkSink(t, 0, nil)
	root := t.TempDir()
	logDir := filepath.Join(root, "logs")
	pod := testPod()
	w, err := crilog.Open(filepath.Join(logDir, "ns1_web-0_uid-1", "app", "0.log"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(w.Stream(crilog.Stdout), "small before\n")
	fmt.Fprintf(w.Stream(crilog.Stdout), "big %s\n", strings.Repeat("y", 300<<10))
	fmt.Fprintf(w.Stream(crilog.Stdout), "small after\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r := startShipper(t, Config{
		PodLogDir: logDir, StateDir: filepath.Join(root, "state"), NodeName: "node-a", URL: srv.URL,
		Pod:          func(types.UID) *corev1.Pod { return pod },
		PollInterval: 10 * time.Millisecond, FlushInterval: 20 * time.Millisecond,
		FlushBytes: 8 << 10, MaxInFlightBytes: 64 << 10, // the least a bound may be: 8 × FlushBytes
	})
	deadline := time.Now().Add(30 * time.Second)
	for len(sink.messages()) < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	var big int
	for _, m := range sink.messages() {
		if strings.HasPrefix(m, "big ") {
			big = len(m)
		}
	}
	if n := len(sink.messages()); n != 3 || big != 4+300<<10 {
		t.Fatalf("%d documents, the big one %d bytes", n, big)
	}
	if st := r.s.Stats(); st.PeakInFlightBytes > 64<<10 {
		t.Fatalf("peak %d bytes over the bound", st.PeakInFlightBytes)
	}
}

// TestRawFallbackKeepsItsLine: a sink that rejects every document with
// lifted JSON fields gets each line again as raw text, with that line's
// own message. The fallback used to re-render from the tailer's line
// buffer, which by then held later lines: the retried document carried
// another line's text under this line's ID, and this line was lost.
func TestRawFallbackKeepsItsLine(t *testing.T) {
	srv, sink := newBulkSink(t, 0, func(doc map[string]any) int {
		if _, lifted := doc["n"]; lifted {
			return http.StatusBadRequest
		}
		return http.StatusCreated
	})
	root := t.TempDir()
	logDir := filepath.Join(root, "logs")
	pod := testPod()
	const n = 300
	w, err := crilog.Open(filepath.Join(logDir, "ns1_web-0_uid-1", "app", "0.log"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		fmt.Fprintf(w.Stream(crilog.Stdout), `{"n":%d,"msg":"json line %04d"}`+"\n", i, i)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r := startShipper(t, Config{
		PodLogDir: logDir, StateDir: filepath.Join(root, "state"), NodeName: "node-a", URL: srv.URL,
		Pod:          func(types.UID) *corev1.Pod { return pod },
		PollInterval: 10 * time.Millisecond, FlushInterval: 20 * time.Millisecond,
	})
	deadline := time.Now().Add(30 * time.Second)
	for len(sink.messages()) < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	got := sink.messages()
	if len(got) != n {
		t.Fatalf("%d of %d lines arrived", len(got), n)
	}
	byMsg := map[string]string{}
	for id, m := range got {
		byMsg[m] = id
	}
	for i := range n {
		want := fmt.Sprintf(`{"n":%d,"msg":"json line %04d"}`, i, i)
		if _, ok := byMsg[want]; !ok {
			t.Fatalf("line %d missing (or shipped with another line's text)", i)
		}
	}
	if st := r.s.Stats(); st.DeadLettered != 0 || st.Retries < n {
		t.Fatalf("stats %+v: want every line retried as raw text, none dead-lettered", st)
	}
	_ = os.Remove(filepath.Join(root, "state", "deadletter.log"))
}
