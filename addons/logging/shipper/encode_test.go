package shipper

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestDocIDStable pins the document ID scheme: a changed ID would turn
// every re-shipped line after an upgrade into a duplicate document.
func TestDocIDStable(t *testing.T) {
	id := fileID{rel: "ns1_web-0_uid-1/app", restart: "0", dev: 5, ino: 42}
	// sha256("ns1_web-0_uid-1/app/0@5:42\x00abcd\x00123")[:16], hex.
	const want = "ab6ecad1339b19ad9e710e297cf25d1e"
	if got := docID(id, "abcd", 123); got != want {
		t.Fatalf("docID = %s, want %s", got, want)
	}
	if got := docIDFrom(docIDPrefix(id, "abcd"), 123); got != want {
		t.Fatalf("docIDFrom = %s, want %s", got, want)
	}
}

// TestEncodeFastPath checks that the ASCII fast path and the cached
// metadata give the document encoding/json gives.
func TestEncodeFastPath(t *testing.T) {
	meta := &Meta{NamespaceName: "ns1", PodName: "web-0", PodID: "uid-1", ContainerName: "app", Host: "n1", Labels: map[string]string{"app.kubernetes.io/name": "web"}}
	plain := *meta // enc unset: marshalled per document
	meta.encoded()
	ts := time.Date(2026, 3, 1, 0, 0, 0, 5, time.UTC)
	for _, msg := range []string{"plain text line", `quote " and \ back`, "<tag> & co", "tab\there", "ünïcode", "bad \xff utf8", `{"level":"warn","n":1}`} {
		var a, b bytes.Buffer
		encode(&a, &logLine{time: ts, stream: "stdout", msg: []byte(msg)}, meta, true)
		encode(&b, &logLine{time: ts, stream: "stdout", msg: []byte(msg)}, &plain, true)
		var da, db map[string]any
		if err := json.Unmarshal(a.Bytes(), &da); err != nil {
			t.Fatalf("%q: %v: %s", msg, err, a.Bytes())
		}
		if err := json.Unmarshal(b.Bytes(), &db); err != nil {
			t.Fatal(err)
		}
		ja, _ := json.Marshal(da)
		jb, _ := json.Marshal(db)
		if !bytes.Equal(ja, jb) {
			t.Fatalf("%q:\n%s\n%s", msg, a.Bytes(), b.Bytes())
		}
		if want := bytes.ToValidUTF8([]byte(msg), []byte("\uFFFD")); da["message"] != string(want) {
			t.Fatalf("message %q, want %q", da["message"], want)
		}
	}
}

// TestRawBody: the raw-text fallback cut from a lifted document is
// exactly the document rendered without lifting.
func TestRawBody(t *testing.T) {
	meta := (&Meta{NamespaceName: "ns1", PodName: "web-0", PodID: "uid-1", ContainerName: "app", Host: "n1"}).encoded()
	ts := time.Date(2026, 3, 1, 0, 0, 0, 5, time.UTC)
	for _, msg := range []string{"plain", `{"level":"warn","n":1,"nested":{"a":[1,2]}}`, `{"message":"kept ours"}`, `{}`} {
		var lifted, raw bytes.Buffer
		isLifted, rawEnd := encode(&lifted, &logLine{time: ts, stream: "stdout", msg: []byte(msg)}, meta, true)
		encode(&raw, &logLine{time: ts, stream: "stdout", msg: []byte(msg)}, meta, false)
		body := lifted.Bytes()
		if got := rawBody(body, rawEnd); !bytes.Equal(got, raw.Bytes()) {
			t.Fatalf("%q: rawBody\n%s\nwant\n%s", msg, got, raw.Bytes())
		}
		if isLifted != strings.Contains(msg, "level") {
			t.Fatalf("%q: lifted %v", msg, isLifted)
		}
		if !bytes.Equal(lifted.Bytes(), body) {
			t.Fatalf("%q: rawBody changed the lifted body", msg)
		}
	}
}
