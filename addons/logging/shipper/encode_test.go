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

// FuzzCanonicalTime: a timestamp canonicalTime accepts and time.Parse
// reads is exactly what formatting the parsed time renders, so encode may
// copy it.
func FuzzCanonicalTime(f *testing.F) {
	for _, s := range []string{
		"2026-12-02T10:45:47.123456789Z", "2026-12-02T10:45:47Z", "2026-12-02T10:45:47.5Z",
		"2026-12-02T10:45:47.50Z", "2026-12-02T10:45:47.000Z", "2026-12-02T10:45:47.1234567891Z",
		"2026-12-02T10:45:47+00:00", "2026-12-02T10:45:47.1+02:00", "2026-02-30T10:45:47Z",
		"2026-12-02T24:00:00Z", "2026-12-02T23:59:60Z", "2026-12-02 10:45:47Z", "0000-01-01T00:00:00.1Z",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, ts []byte) {
		if !canonicalTime(ts) {
			return
		}
		tm, err := time.Parse(time.RFC3339Nano, string(ts))
		if err != nil {
			return // the CRI parser refused it: encode never sees it
		}
		if got := tm.UTC().Format(time.RFC3339Nano); got != string(ts) {
			t.Fatalf("%q formats back as %q", ts, got)
		}
	})
}

// TestEncodeCopiesCanonicalTime: the node agent's CRI timestamps take the
// copy, and the document is the same either way.
func TestEncodeCopiesCanonicalTime(t *testing.T) {
	meta := (&Meta{NamespaceName: "ns1", PodName: "web-0", PodID: "uid-1", ContainerName: "app", Host: "n1"}).encoded()
	for _, ts := range []string{"2026-12-02T10:45:47.123456789Z", "2026-12-02T10:45:47Z", "2026-12-02T10:45:47.5Z"} {
		if !canonicalTime([]byte(ts)) {
			t.Errorf("%s: not taken as canonical", ts)
		}
		tm, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			t.Fatal(err)
		}
		var copied, formatted bytes.Buffer
		encode(&copied, &logLine{time: tm, ts: []byte(ts), stream: "stdout", msg: []byte("x")}, meta, true)
		encode(&formatted, &logLine{time: tm, stream: "stdout", msg: []byte("x")}, meta, true)
		if copied.String() != formatted.String() {
			t.Errorf("%s:\n%s\n%s", ts, copied.Bytes(), formatted.Bytes())
		}
	}
	for _, ts := range []string{"2026-12-02T10:45:47.50Z", "2026-12-02T10:45:47+00:00", "2026-12-02T10:45:47.1234567891Z"} {
		if canonicalTime([]byte(ts)) {
			t.Errorf("%s: taken as canonical", ts)
		}
	}
}
