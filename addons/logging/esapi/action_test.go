package esapi

import (
	"bytes"
	"encoding/json"
	"testing"
)

// checkActionFast asserts that wherever parseActionFast answers, encoding/json
// reads the line the same way (one action key whose object holds only string
// _index/_id) and the general parser agrees.
func checkActionFast(t *testing.T, line string) (fast bool) {
	t.Helper()
	last := ""
	it, ok, fast := parseActionFast([]byte(line), "def", &last)
	if !fast {
		return false
	}
	if !ok {
		t.Fatalf("%q: the fast path answered but rejected", line)
	}
	var outer map[string]json.RawMessage
	if err := json.Unmarshal([]byte(line), &outer); err != nil {
		t.Fatalf("%q: fast path accepted, encoding/json: %v", line, err)
	}
	if len(outer) != 1 {
		t.Fatalf("%q: %d keys", line, len(outer))
	}
	inner, found := outer[it.action]
	if !found {
		t.Fatalf("%q: action %q not the key", line, it.action)
	}
	var meta map[string]string
	if err := json.Unmarshal(inner, &meta); err != nil {
		t.Fatalf("%q: metadata: %v", line, err)
	}
	wantIndex, wantID := "def", ""
	for k, v := range meta {
		switch k {
		case "_index":
			wantIndex = v
		case "_id":
			wantID = v
		default:
			t.Fatalf("%q: fast path took key %q", line, k)
		}
	}
	if it.index != wantIndex || it.id != wantID || it.op != -1 || it.err != "" {
		t.Fatalf("%q: fast %+v, encoding/json index %q id %q", line, it, wantIndex, wantID)
	}
	// decodeBulk hands both parsers trimmed lines.
	slow, sok := parseAction(bytes.TrimSpace([]byte(line)), "def")
	if !sok || slow.action != it.action || slow.index != it.index || slow.id != it.id {
		t.Fatalf("%q: fast %+v, general parser %+v (ok %v)", line, it, slow, sok)
	}
	return true
}

func TestActionFast(t *testing.T) {
	for _, l := range []string{
		`{"create":{"_index":"logs-kubernetes-default","_id":"0123456789abcdef0123456789abcdef"}}`,
		`{"index":{}}`,
		` { "create" : { "_id" : "x" , "_index" : "a" } } `,
		`{"delete":{"_index":"a","_id":"1"}}`,
		`{"update":{"_id":"1"}}`,
		`{"create":{"_index":"a","_index":"b"}}`,
		`{"create":{"_index":""}}`,
	} {
		if !checkActionFast(t, l) {
			t.Errorf("%q: not taken by the fast path", l)
		}
	}
	// Lines left to the general parser (it decides them, as before).
	for _, l := range []string{
		`{"create":{"_index":"a\u0062"}}`,
		`{"create":{"_index":"a","_type":"_doc"}}`,
		`{"create":{"_id":1}}`,
		`{"create":{"_id":null}}`,
		`{"create":{"_index":"a",}}`,
		`{"create":{"_index":"a"}}x`,
		`{"create":{"_index":"a"},"index":{}}`,
		`{"creat":{}}`,
		`{"create":{"_index":"é"}}`,
		`{"create":"x"}`,
		`{"create":{"_index":"a"}`,
		`[]`,
	} {
		if checkActionFast(t, l) {
			t.Errorf("%q: taken by the fast path", l)
		}
	}
	// The index name is shared while it repeats.
	last := ""
	a, _, _ := parseActionFast([]byte(`{"create":{"_index":"logs-x"}}`), "", &last)
	b, _, _ := parseActionFast([]byte(`{"create":{"_index":"logs-x"}}`), "", &last)
	if a.index != "logs-x" || b.index != "logs-x" || last != "logs-x" {
		t.Fatalf("index %q %q last %q", a.index, b.index, last)
	}
}

// FuzzActionFast: the action-line fast path agrees with encoding/json and
// the general parser on every line it answers, and never panics.
func FuzzActionFast(f *testing.F) {
	for _, s := range []string{
		`{"create":{"_index":"logs-kubernetes-default","_id":"abc"}}`,
		`{"index":{}}`, ` {"delete" :{ "_id":"1"}} `, `{"create":{"_index":"a\"b"}}`,
		`{"create":{"_index":"a","_id":"1","_id":"2"}}`, `{"create":{"_id":1}}`, `{}`, `{"index":{"_id":"a\\b"}}`, `{"create":{},}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		checkActionFast(t, line)
	})
}

// BenchmarkActionLine: the shipper's action line through the general parser
// and through the fast path.
func BenchmarkActionLine(b *testing.B) {
	line := []byte(`{"create":{"_index":"logs-kubernetes-default","_id":"0123456789abcdef0123456789abcdef"}}`)
	b.Run("general", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := parseAction(line, ""); !ok {
				b.Fatal("rejected")
			}
		}
	})
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		last := ""
		for b.Loop() {
			if _, ok, fast := parseActionFast(line, "", &last); !ok || !fast {
				b.Fatal("not fast")
			}
		}
	})
}
