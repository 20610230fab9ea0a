package esapi

import (
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/skiffhq/skiff/addons/logging/store"
)

// bulkMixed is a _bulk body with a created document, a duplicate of it
// (409), an unsupported action and a document that is not an object.
const bulkMixed = `{"create":{"_index":"logs-a","_id":"d1"}}
{"message":"one"}
{"create":{"_index":"logs-a","_id":"d1"}}
{"message":"again"}
{"update":{"_index":"logs-a","_id":"d1"}}
{"doc":{}}
{"index":{"_index":"logs-a","_id":"d2"}}
[1,2]
`

var tookRE = regexp.MustCompile(`"took":\d+`)

// TestBulkFilterPath: the _bulk response keeps what filter_path selects,
// as Elasticsearch does, and answers in full for what is not implemented.
func TestBulkFilterPath(t *testing.T) {
	srv := newTestServer(t, 0)
	post := func(t *testing.T, query string) string {
		t.Helper()
		code, _, body := do(t, "POST", srv.URL+"/logs/_bulk"+query, []byte(bulkMixed))
		if code != 200 {
			t.Fatalf("_bulk%s: %d %s", query, code, body)
		}
		if !json.Valid(body) {
			t.Fatalf("_bulk%s: invalid JSON %s", query, body)
		}
		return tookRE.ReplaceAllString(string(body), `"took":0`)
	}
	// The first request creates d1: the others see it as a duplicate.
	full := post(t, "")
	if !strings.Contains(full, `"_id":"d1","_version":1,"result":"created"`) {
		t.Fatalf("first request did not create d1: %s", full)
	}
	full = post(t, "")
	want := `{"errors":true,"took":0,"items":[` +
		`{"create":{"_index":"logs-a","_id":"d1","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[d1]: version conflict, document already exists (current version [1])","index":"logs-a"}}},` +
		`{"create":{"_index":"logs-a","_id":"d1","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[d1]: version conflict, document already exists (current version [1])","index":"logs-a"}}},` +
		`{"update":{"_index":"logs-a","_id":"d1","status":400,"error":{"type":"illegal_argument_exception","reason":"the embedded log store keeps documents immutable: [update] is not supported","index":"logs-a"}}},`
	if !strings.HasPrefix(full, want) {
		t.Fatalf("full response:\n%s\nwant prefix\n%s", full, want)
	}
	for _, c := range []struct{ query, want string }{
		{"?filter_path=errors,items.*.status,items.*.error",
			`{"errors":true,"items":[` +
				`{"create":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"[d1]: version conflict, document already exists (current version [1])","index":"logs-a"}}},` +
				`{"create":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"[d1]: version conflict, document already exists (current version [1])","index":"logs-a"}}},` +
				`{"update":{"status":400,"error":{"type":"illegal_argument_exception","reason":"the embedded log store keeps documents immutable: [update] is not supported","index":"logs-a"}}},` +
				`{"index":{"status":400,"error":{"type":"document_parsing_exception","reason":"failed to parse: bad document: not a JSON object","index":"logs-a"}}}]}`},
		{"?filter_path=took", `{"took":0}`},
		{"?filter_path=items.create._id,items.*.error.type",
			`{"items":[{"create":{"_id":"d1","error":{"type":"version_conflict_engine_exception"}}},{"create":{"_id":"d1","error":{"type":"version_conflict_engine_exception"}}},` +
				`{"update":{"error":{"type":"illegal_argument_exception"}}},{"index":{"error":{"type":"document_parsing_exception"}}}]}`},
		{"?filter_path=items.*.result", `{}`},
		{"?filter_path=nothing", `{}`},
		{"?filter_path=err*,-took", full},      // exclusions: not implemented, answered in full
		{"?filter_path=items.**.status", full}, // ** likewise
		{"?filter_path=", full},
	} {
		if got := post(t, c.query); got != c.want {
			t.Errorf("_bulk%s:\n got %s\nwant %s", c.query, got, c.want)
		}
	}
}

func TestFilterPathSel(t *testing.T) {
	fp, ok := parseFilterPath("errors, items.*.status,items.cr*e.error.t*")
	if !ok {
		t.Fatal("not parsed")
	}
	for _, c := range []struct {
		path []string
		want int
	}{
		{[]string{"errors"}, selAll},
		{[]string{"took"}, selNone},
		{[]string{"items"}, selSome},
		{[]string{"items", "index"}, selSome},
		{[]string{"items", "index", "status"}, selAll},
		{[]string{"items", "index", "error"}, selNone},
		{[]string{"items", "create", "error"}, selSome},
		{[]string{"items", "create", "error", "type"}, selAll},
		{[]string{"items", "create", "error", "reason"}, selNone},
		{[]string{"items", "cra", "error"}, selNone}, {[]string{"items", "cre", "error"}, selSome},
	} {
		if got := fp.sel(c.path...); got != c.want {
			t.Errorf("sel(%v) = %d, want %d", c.path, got, c.want)
		}
	}
	for _, c := range []struct {
		pat, name string
		want      bool
	}{
		{"*", "", true}, {"a*", "a", true}, {"*b", "ab", true}, {"a*c*e", "abcde", true},
		{"a*c", "abcd", false}, {"abc", "ab", false}, {"*x*", "abc", false},
	} {
		if got := globMatch(c.pat, c.name); got != c.want {
			t.Errorf("globMatch(%q, %q) = %v", c.pat, c.name, got)
		}
	}
}

// refFilter applies fp to a decoded JSON value the slow, obvious way:
// what the renderer must produce.
func refFilter(fp filterPath, v any, path []string) (any, bool) {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, sub := range v {
			p := append(path[:len(path):len(path)], k)
			switch fp.sel(p...) {
			case selAll:
				out[k] = sub
			case selSome:
				if f, ok := refFilter(fp, sub, p); ok {
					out[k] = f
				}
			}
		}
		return out, len(out) > 0
	case []any:
		out := []any{}
		for _, e := range v {
			if f, ok := refFilter(fp, e, path); ok {
				out = append(out, f)
			}
		}
		return out, len(out) > 0
	}
	return nil, false // a scalar has no fields to select
}

// FuzzBulkFilterPath: for any filter_path, the rendered _bulk response is
// valid JSON and equals the full response filtered by refFilter.
func FuzzBulkFilterPath(f *testing.F) {
	for _, s := range []string{"errors,items.*.status,items.*.error", "took", "items.*._shards.t*", "items.create", "*", "items.*.error.reason,took", "a**b", "-x", ",,", "items..x"} {
		f.Add(s)
	}
	st, err := store.Open(store.Options{Dir: f.TempDir(), NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = st.Close() })
	body := []byte(bulkMixed + `{"create":{"_index":"logs-b"}}` + "\n" + `{"message":"new"}` + "\n")
	items := decodeBulk(body, "")
	var ops []store.Op
	for i := range items {
		if it := &items[i]; it.err == "" && (it.action == "create" || it.action == "index") {
			it.op = len(ops)
			ops = append(ops, store.Op{Index: it.index, ID: it.id, Create: it.action == "create", Source: it.source})
		} else if it.err == "" {
			it.err = "unsupported"
		}
	}
	res, err := st.Bulk(f.Context(), ops)
	if err != nil {
		f.Fatal(err)
	}
	var full any
	if err := json.Unmarshal(renderBulk(items, res, 7, nil), &full); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fp, ok := parseFilterPath(s)
		if !ok {
			return
		}
		out := renderBulk(items, res, 7, fp)
		var got any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("filter_path %q: invalid JSON %s: %v", s, out, err)
		}
		want, _ := refFilter(fp, full, nil)
		if fp == nil {
			want = full
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("filter_path %q:\n got %s\nwant %v", s, out, want)
		}
	})
}
