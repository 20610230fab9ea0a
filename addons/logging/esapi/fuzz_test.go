package esapi

import (
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
