package esapi

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/skiffhq/skiff/addons/logging/store"
)

// FuzzQueryString: any input parses or returns an error, never panics, and
// a parsed query runs against a small store.
func FuzzQueryString(f *testing.F) {
	for _, s := range []string{"level:error AND NOT ns:kube-system", `"disk full" OR f:(a b)`, "n:[1 TO 5}", "a\\:b*", "((((", "-+!x", "f:>=now-1h", "_exists_:a"} {
		f.Add(s)
	}
	st, err := store.Open(store.Options{Dir: f.TempDir(), NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = st.Close() })
	if _, err := st.Bulk(f.Context(), []store.Op{{Index: "logs-a", Source: []byte(`{"@timestamp":"2026-01-01T00:00:00Z","message":"disk full error","n":3,"f":"a"}`)}}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := parseQueryString(s, "", strings.Contains(s, "&"))
		if err != nil {
			return
		}
		if _, err := st.Search(t.Context(), store.SearchRequest{Query: q, Size: 1}); err != nil {
			t.Fatalf("search %q: %v", s, err)
		}
	})
}

// FuzzBulkDecode: any body splits into items without panicking; every
// source either flattens or is reported as a bad document.
func FuzzBulkDecode(f *testing.F) {
	f.Add([]byte("{\"create\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"message\":\"x\"}\n"))
	f.Add([]byte("junk\n{\"index\":{}}\n{\"a\":{\"b\":[1,{\"c\":null}]}}\n"))
	f.Add([]byte("{\"delete\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"update\":{\"_id\":\"1\"}}\n{\"doc\":{}}"))
	f.Add([]byte("{\"create\":{\"_index\":\"a\"}}\n{\"m\":\"\xff\xfe\\ud800\"}\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		items := decodeBulk(body, "logs-default")
		for _, it := range items {
			if it.source == nil {
				continue
			}
			_ = store.FlatFields(it.source, func(path [][]byte, v []byte, isString bool) {
				if len(path) == 0 {
					t.Fatalf("empty path in %q", it.source)
				}
			})
		}
	})
}

// decodeBulkRef is decodeBulk as it was before it read lines lazily (all
// lines split first): the reference FuzzBulkDecodeSame compares with.
func decodeBulkRef(body []byte, defIndex string) []bulkItem {
	var lines [][]byte
	for b := body; len(b) > 0; {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			lines = append(lines, b)
			break
		}
		lines = append(lines, b[:i])
		b = b[i+1:]
	}
	var items []bulkItem
	var lastIndex string
	for i := 0; i < len(lines); i++ {
		line := bytes.TrimSpace(lines[i])
		if len(line) == 0 {
			continue
		}
		it, ok, fast := parseActionFast(line, defIndex, &lastIndex)
		if !fast {
			it, ok = parseAction(line, defIndex)
		}
		if !ok {
			it.action = "index"
			if it.err == "" {
				it.err = "Malformed action/metadata line [" + strconv.Itoa(i+1) + "], expected START_OBJECT with one of [index, create, update, delete]"
			}
			if i+1 < len(lines) {
				if _, next := parseAction(bytes.TrimSpace(lines[i+1]), defIndex); !next {
					i++
				}
			}
			items = append(items, it)
			continue
		}
		if it.action != "delete" {
			if i+1 >= len(lines) {
				it.err = "The bulk request must be terminated by a newline [\\n]: missing source for action [" + it.action + "]"
			} else {
				i++
				it.source = bytes.TrimSpace(lines[i])
			}
		}
		items = append(items, it)
	}
	return items
}

// FuzzBulkDecodeSame: decodeBulk, reading lines as it goes and into a
// reused slice of items, decodes every body as the reference does.
func FuzzBulkDecodeSame(f *testing.F) {
	f.Add([]byte("{\"create\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"message\":\"x\"}\n"))
	f.Add([]byte("junk\n{\"index\":{}}\n{\"a\":{\"b\":[1,{\"c\":null}]}}\n"))
	f.Add([]byte("{\"delete\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"update\":{\"_id\":\"1\"}}\n{\"doc\":{}}"))
	f.Add([]byte("\n\n junk \n\n{\"create\":{}}\r\n\n{\"index\":{\"_index\":\"b\"}}"))
	f.Add([]byte("{\"create\":{\"_index\":\"a\"}}"))
	f.Add([]byte("x\ny\n"))
	reuse := decodeBulk([]byte("{\"create\":{\"_index\":\"z\",\"_id\":\"q\"}}\n{\"m\":1}\njunk\n"), "old")
	f.Fuzz(func(t *testing.T, body []byte) {
		want := decodeBulkRef(body, "logs-default")
		for _, got := range [][]bulkItem{decodeBulk(body, "logs-default"), decodeBulkInto(reuse[:0], body, "logs-default")} {
			if len(got) != len(want) {
				t.Fatalf("%q: %d items, want %d", body, len(got), len(want))
			}
			for i := range got {
				g, w := got[i], want[i]
				if g.action != w.action || g.index != w.index || g.id != w.id || g.err != w.err || g.op != w.op ||
					!bytes.Equal(g.source, w.source) || (g.source == nil) != (w.source == nil) {
					t.Fatalf("%q item %d: %+v, want %+v", body, i, g, w)
				}
			}
		}
	})
}
