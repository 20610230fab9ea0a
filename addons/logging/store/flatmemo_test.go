package store

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// flatResult is what flatten gives for one document, copied.
type flatResult struct {
	err    string
	fields []string
}

func flatOf(f *flattener, src []byte) flatResult {
	var r flatResult
	if err := f.flatten(src); err != nil {
		r.err = err.Error()
		return r
	}
	for _, fd := range f.fields {
		r.fields = append(r.fields, fmt.Sprintf("%q %d %q", fd.path, fd.kind, fd.value))
	}
	return r
}

func (r flatResult) String() string { return fmt.Sprintf("err=%q fields=%q", r.err, r.fields) }

// checkMemo flattens docs in order with one flattener (its object memo
// at work) and each with a flattener that parses every object; the
// fields must be the same.
func checkMemo(t *testing.T, docs [][]byte) {
	t.Helper()
	memo := &flattener{}
	for i, d := range docs {
		got := flatOf(memo, d)
		want := flatOf(&flattener{noMemo: true}, d)
		if got.String() != want.String() {
			t.Fatalf("doc %d %q:\nmemo:  %s\nparsed: %s", i, d, got, want)
		}
	}
}

const k8s = `{"namespace_name":"default","pod_name":"web-7d9c","pod_id":"0f1e2d3c-aaaa-bbbb-cccc-000000000001","container_name":"web","host":"node-1","labels":{"app":"web","app.kubernetes.io/name":"web"}}`

// memoCorpus are documents in the shapes the memo must get right: the
// same metadata in a row, metadata that differs by a byte, is a prefix of
// the remembered bytes, is followed by other keys, has escapes, invalid
// UTF-8, numbers, arrays, nulls, nested objects, duplicate keys, is
// malformed after a valid prefix, or sits under another key.
func memoCorpus() [][]byte {
	var docs [][]byte
	add := func(s string) { docs = append(docs, []byte(s)) }
	for i := range 3 {
		add(fmt.Sprintf(`{"@timestamp":"2026-12-02T07:00:0%dZ","stream":"stdout","message":"line %d","kubernetes":%s}`, i, i, k8s))
	}
	add(`{"message":"x","kubernetes":` + k8s + `,"level":"info","n":1}`)
	add(`{"kubernetes":` + k8s + `}`)
	add(`{"kubernetes":` + bytes.NewBuffer([]byte(k8s)).String()[:len(k8s)-2] + `"}}`) // differs at the end
	add(`{"kubernetes":` + k8s[:len(k8s)-1] + `,"extra":[1,{"a":null},"b"],"ann":{"x":"\u00e9\"\\"}}}`)
	add(`{"kubernetes":` + k8s[:len(k8s)-1] + `,"extra":[1,{"a":null},"b"],"ann":{"x":"\u00e9\"\\"}}}`)
	add(`{"kubernetes":` + k8s + `,"kubernetes":` + k8s + `}`)       // duplicate key
	add(`{"kubernetes":` + k8s + `,"other":` + k8s + `}`)            // the same bytes under another key
	add(`{"kubernetes":` + k8s + ` , "message" : "spaced" }`)        // whitespace after
	add(`{"kubernetes":` + k8s + `,"message":"bad \xff utf8 \xc3"}`) // invalid UTF-8 outside
	add(`{"kubernetes":{"namespace_name":"bad \xff\xfe utf8 inside the block, long enough to be remembered"}}`)
	add(`{"kubernetes":{"namespace_name":"bad \xff\xfe utf8 inside the block, long enough to be remembered"}}`)
	add(`{"kubernetes":` + k8s + `,`) // malformed after a remembered object
	add(`{"kubernetes":` + k8s)       // truncated
	add(`{"kubernetes":` + k8s[:40])  // a prefix of the remembered bytes
	add(`{"kubernetes":{"n":1.5e3,"t":true,"f":false,"z":null,"arr":[{"deep":[1,2]}],"long":"` + string(bytes.Repeat([]byte("a"), 70)) + `"}}`)
	add(`{"kubernetes":{"n":1.5e3,"t":true,"f":false,"z":null,"arr":[{"deep":[1,2]}],"long":"` + string(bytes.Repeat([]byte("a"), 70)) + `"}}`)
	add(`{"kubernetes":"a string now"}`)
	add(`{"kubernetes":` + k8s + `}`)
	add(`{"a\u001fb":` + k8s + `,"c":` + k8s + `,"d":` + k8s + `,"e":` + k8s + `,"f":` + k8s + `}`) // more keys than the memo holds
	add(`{"a\u001fb":` + k8s + `,"c":` + k8s + `,"d":` + k8s + `,"e":` + k8s + `,"f":` + k8s + `}`)
	add(`{"_type":"_doc","log":{"level":"warn","msg":"lifted from a JSON body, long enough to be remembered"},"kubernetes":` + k8s + `}`)
	add(`{"_type":"_doc","log":{"level":"warn","msg":"lifted from a JSON body, long enough to be remembered"},"kubernetes":` + k8s + `}`)
	add(`{"kubernetes":{}}`)
	add(`[` + k8s + `]`)
	return docs
}

func TestFlattenObjectMemo(t *testing.T) {
	docs := memoCorpus()
	checkMemo(t, docs)
	// the memo must be used, also when a request mixes containers
	other := []byte(`{"message":"m","kubernetes":` + strings.Replace(k8s, "web-7d9c", "api-1234", 1) + `}`)
	f := &flattener{}
	for _, d := range [][]byte{docs[0], other, docs[1], other, docs[2]} {
		flatOf(f, d)
	}
	if f.objHits != 3 {
		t.Fatalf("%d of 3 repeated kubernetes objects copied from the memo", f.objHits)
	}
}

// FuzzFlattenObjectMemo: a document flattened after another (whose
// objects the memo remembers) gives the fields of a fresh parse.
func FuzzFlattenObjectMemo(f *testing.F) {
	docs := memoCorpus()
	for i := 1; i < len(docs); i++ {
		f.Add(docs[i-1], docs[i])
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		checkMemo(t, [][]byte{a, b, a, b})
	})
}

// BenchmarkFlatten flattens shipper-shaped documents (100-byte message,
// the same kubernetes block per container), with and without the memo.
func BenchmarkFlatten(b *testing.B) {
	meta := `{"namespace_name":"bench","pod_name":"writer-3","pod_id":"9f8e7d6c-1111-2222-3333-444455556666","container_name":"app","container_image":"registry.local/app:1.2.3","host":"node-1","labels":{"app":"writer","pod-template-hash":"7d9c5b8f6","app.kubernetes.io/name":"writer","app.kubernetes.io/part-of":"bench"},"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-12-01T10:00:00Z","prometheus.io/scrape":"true","prometheus.io/port":"9090"}}`
	docs := make([][]byte, 1000)
	for i := range docs {
		docs[i] = fmt.Appendf(nil, `{"@timestamp":"2026-12-02T07:00:00.%09dZ","stream":"stdout","message":"GET /api/v1/items/%d took=%dms user=u%d lorem ipsum dolor sit amet consectetur %08x","kubernetes":%s}`, i, i, i%17, i%50, i*7919, meta)
	}
	for _, noMemo := range []bool{false, true} {
		b.Run(fmt.Sprintf("noMemo=%v", noMemo), func(b *testing.B) {
			f := &flattener{noMemo: noMemo}
			n := 0
			for b.Loop() {
				if err := f.flatten(docs[n%len(docs)]); err != nil {
					b.Fatal(err)
				}
				n++
			}
		})
	}
}
