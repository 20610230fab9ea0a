package shipper

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esutil"
)

// bulkCapture is a sink that records the _bulk bodies it is sent and
// answers every item with 201 (compact response).
type bulkCapture struct {
	mu     sync.Mutex
	bodies [][]byte
}

func (c *bulkCapture) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, ok := esRequest(w, req)
	if !ok {
		return
	}
	if !strings.HasSuffix(req.URL.Path, "/_bulk") {
		_, _ = w.Write([]byte(`{}`))
		return
	}
	c.mu.Lock()
	c.bodies = append(c.bodies, b)
	c.mu.Unlock()
	var out bytes.Buffer
	out.WriteString(`{"errors":false,"items":[`)
	for i := range bytes.Count(b, []byte{'\n'}) / 2 {
		if i > 0 {
			out.WriteByte(',')
		}
		out.WriteString(`{"create":{"status":201}}`)
	}
	out.WriteString(`]}`)
	_, _ = w.Write(out.Bytes())
}

// body is everything sent, in order.
func (c *bulkCapture) body() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Join(c.bodies, nil)
}

// bulkBodyCases are documents of odd shapes: lifted JSON bodies (one
// spread over lines, as a joined multi-line record), escapes, invalid
// UTF-8, HTML characters, and namespaces that need no escape.
var bulkBodyCases = []struct {
	ns, msg string
	offset  int64
}{
	{"ns1", "plain text line", 0},
	{"ns1", `{"level":"warn","n":1,"nested":{"a":[1,2]}}`, 17},
	{"kube-system", `quote " and \ back`, 1 << 40},
	{"ns1", "<tag> & co\ttab", 99},
	{"ns1", "ünïcode", 12345},
	{"ns1", "bad \xff utf8", 7},
	{"ns1", "{\"a\":\n {\"b\": [1,\n 2]},\r\n \"message\": \"ours\"}", 3},
	{"ns1", `{"@timestamp":"x","kubernetes":{},"log":1,"ok":true}`, 5},
	{"ns1", "", 8},
}

// TestBulkBodyEqualsIndexer: the _bulk body the sink builds holds, line by
// line, the documents go-elasticsearch's bulk indexer sent (the same
// bytes) behind action lines that decode to the same action, index and ID.
func TestBulkBodyEqualsIndexer(t *testing.T) {
	prefix := docIDPrefix(fileID{rel: "ns1_web-0_uid-1/app", restart: "0", dev: 5, ino: 42}, "abcd")
	ts := time.Date(2026, 3, 1, 0, 0, 0, 5, time.UTC)
	metaOf := func(ns string) *Meta {
		return (&Meta{NamespaceName: ns, PodName: "web-0", PodID: "uid-1", ContainerName: "app", Host: "n1",
			Labels: map[string]string{"app.kubernetes.io/name": "web"}}).encoded()
	}

	// The old path: the bulk indexer, with the document and ID the sink
	// used to give it.
	oldCap := &bulkCapture{}
	oldSrv := httptest.NewServer(oldCap)
	defer oldSrv.Close()
	es, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{oldSrv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	bi, err := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{Client: es, NumWorkers: 1, FlushBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range bulkBodyCases {
		var buf bytes.Buffer
		encode(&buf, &logLine{time: ts, stream: "stdout", msg: []byte(c.msg), offset: c.offset}, metaOf(c.ns), true)
		if err := bi.Add(ctx, esutil.BulkIndexerItem{Index: IndexPrefix + c.ns, Action: "create",
			DocumentID: docIDFrom(prefix, c.offset), Body: bytes.NewReader(buf.Bytes())}); err != nil {
			t.Fatal(err)
		}
	}
	if err := bi.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// The new path: the sink's own batches.
	newCap := &bulkCapture{}
	newSrv := httptest.NewServer(newCap)
	defer newSrv.Close()
	s, err := New(Config{PodLogDir: t.TempDir(), StateDir: t.TempDir(), URL: newSrv.URL})
	if err != nil {
		t.Fatal(err)
	}
	tl := &tailer{s: s, idPrefix: prefix}
	for _, c := range bulkBodyCases {
		var buf bytes.Buffer
		d := newDoc(tl, &logLine{time: ts, stream: "stdout", msg: []byte(c.msg), offset: c.offset}, metaOf(c.ns), &buf)
		s.inflight <- struct{}{}
		tl.push(d.e)
		s.sink.send(s.sendCtx, d)
	}
	closeCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s.sink.close(closeCtx)
	if got := s.Stats().Shipped; got != int64(len(bulkBodyCases)) {
		t.Fatalf("%d of %d documents shipped", got, len(bulkBodyCases))
	}

	oldLines := strings.Split(strings.TrimSuffix(string(oldCap.body()), "\n"), "\n")
	newLines := strings.Split(strings.TrimSuffix(string(newCap.body()), "\n"), "\n")
	if len(oldLines) != 2*len(bulkBodyCases) || len(newLines) != len(oldLines) {
		t.Fatalf("%d lines from the indexer, %d from the sink, want %d", len(oldLines), len(newLines), 2*len(bulkBodyCases))
	}
	for i := 0; i < len(oldLines); i += 2 {
		var oldAction, newAction map[string]map[string]string
		if err := json.Unmarshal([]byte(oldLines[i]), &oldAction); err != nil {
			t.Fatalf("indexer's action line %q: %v", oldLines[i], err)
		}
		if err := json.Unmarshal([]byte(newLines[i]), &newAction); err != nil {
			t.Fatalf("sink's action line %q: %v", newLines[i], err)
		}
		if fmt.Sprint(oldAction) != fmt.Sprint(newAction) {
			t.Errorf("action %d: sink %s, indexer %s", i/2, newLines[i], oldLines[i])
		}
		if newLines[i+1] != oldLines[i+1] {
			t.Errorf("document %d: sink\n%s\nindexer\n%s", i/2, newLines[i+1], oldLines[i+1])
		}
		if !json.Valid([]byte(newLines[i+1])) {
			t.Errorf("document %d is not JSON: %s", i/2, newLines[i+1])
		}
	}
}

// FuzzBulkItem: for any namespace, message and offset, appendBulkItem
// appends two lines: an action line that decodes to a create of the
// namespace's index with docIDFrom's ID, and the document encode renders,
// which is one line of valid JSON.
func FuzzBulkItem(f *testing.F) {
	for _, c := range bulkBodyCases {
		f.Add(c.ns, []byte(c.msg), c.offset)
	}
	f.Add("ns\"quoted\\", []byte("x"), int64(-1))
	f.Add("ns\xff", []byte("{\"a\":\n1}"), int64(0))
	prefix := docIDPrefix(fileID{rel: "ns1_web-0_uid-1/app", restart: "0", dev: 5, ino: 42}, "abcd")
	ts := time.Date(2026, 3, 1, 0, 0, 0, 5, time.UTC)
	f.Fuzz(func(t *testing.T, ns string, msg []byte, offset int64) {
		meta := (&Meta{NamespaceName: ns, PodName: "web-0", PodID: "uid-1", ContainerName: "app", Host: "n1"}).encoded()
		rec := &logLine{time: ts, stream: "stdout", msg: msg, offset: offset}
		var buf, want bytes.Buffer
		d := newDoc(&tailer{idPrefix: prefix}, rec, meta, &buf)
		encode(&want, rec, meta, true)
		head := []byte("prior\n")
		out, sp := appendBulkItem(head, d)
		if len(out)-len(head) != bulkItemSize(d) || !bytes.Equal(out[:len(head)], head) {
			t.Fatalf("appended %d bytes, bulkItemSize says %d", len(out)-len(head), bulkItemSize(d))
		}
		lines := strings.Split(string(out[len(head):]), "\n")
		if len(lines) != 3 || lines[2] != "" {
			t.Fatalf("not two lines: %q", out[len(head):])
		}
		var action map[string]map[string]string
		if err := json.Unmarshal([]byte(lines[0]), &action); err != nil {
			t.Fatalf("action line %q: %v", lines[0], err)
		}
		wantIndex := strings.ToValidUTF8(IndexPrefix+ns, "\uFFFD")
		if len(action) != 1 || len(action["create"]) != 2 || action["create"]["_index"] != wantIndex ||
			action["create"]["_id"] != docIDFrom(prefix, offset) {
			t.Fatalf("action line %q, want a create of %q with ID %s", lines[0], wantIndex, docIDFrom(prefix, offset))
		}
		if lines[1] != want.String() || string(out[sp.start:sp.end]) != lines[1] {
			t.Fatalf("document line %q (span %q), encode renders %q", lines[1], out[sp.start:sp.end], want.Bytes())
		}
		if !json.Valid([]byte(lines[1])) || !utf8.ValidString(lines[1]) {
			t.Fatalf("document line is not valid JSON: %q", lines[1])
		}
	})
}
