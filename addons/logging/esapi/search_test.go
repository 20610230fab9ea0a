package esapi

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

func bulkBody(n int, base time.Time) []byte {
	var b strings.Builder
	for i := range n {
		level := "info"
		if i%4 == 0 {
			level = "error"
		}
		fmt.Fprintf(&b, `{"create":{"_index":"logs-kubernetes-ns%d","_id":"d%d"}}`+"\n", i%2, i)
		fmt.Fprintf(&b, `{"@timestamp":%q,"message":"request %d finished with status %d","level":%q,"kubernetes":{"namespace_name":"ns%d","labels":{"app":"api","app.kubernetes.io/name":"api-server"}}}`+"\n",
			base.Add(time.Duration(i)*time.Minute).Format(time.RFC3339Nano), i, 200+i%3, level, i%2)
	}
	return []byte(b.String())
}

type searchResp struct {
	Hits struct {
		Total struct {
			Value    int64
			Relation string
		}
		Hits []struct {
			Index     string         `json:"_index"`
			ID        string         `json:"_id"`
			Source    map[string]any `json:"_source"`
			Sort      []int64
			Highlight map[string][]string
		}
	}
	Aggregations map[string]struct {
		SumOther int64 `json:"sum_other_doc_count"`
		Buckets  []struct {
			Key         any
			KeyAsString string `json:"key_as_string"`
			DocCount    int64  `json:"doc_count"`
		}
	}
}

func TestSearchAPI(t *testing.T) {
	srv := newTestServer(t, 0)
	base := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	code, _, body := do(t, "POST", srv.URL+"/logs/_bulk", bulkBody(120, base))
	if code != 200 || strings.Contains(string(body), `"errors":true`) {
		t.Fatalf("bulk %d %s", code, body)
	}
	search := func(path, q string) searchResp {
		t.Helper()
		code, _, body := do(t, "POST", srv.URL+"/logs/"+path, []byte(q))
		if code != 200 {
			t.Fatalf("%s %s: %d %s", path, q, code, body)
		}
		var r searchResp
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	counts := []struct {
		q    string
		want int64
	}{
		{`{"query":{"query_string":{"query":"level:error"}}}`, 30},
		{`{"query":{"query_string":{"query":"level:error AND kubernetes.namespace_name:ns1"}}}`, 0},
		{`{"query":{"query_string":{"query":"level:error OR status"}}}`, 120},
		{`{"query":{"query_string":{"query":"NOT level:error"}}}`, 90},
		{`{"query":{"query_string":{"query":"\"status 202\""}}}`, 40},
		{`{"query":{"query_string":{"query":"message:req* AND -level:info"}}}`, 30},
		{`{"query":{"query_string":{"query":"kubernetes.labels.app\\.kubernetes\\.io\\/name:api-server"}}}`, 120},
		{`{"query":{"query_string":{"query":"kubernetes.labels.app:api"}}}`, 120},
		{`{"query":{"query_string":{"query":"@timestamp:[2026-05-01T10:00:00Z TO 2026-05-01T10:09:59Z]"}}}`, 10},
		{`{"query":{"query_string":{"query":"(200 OR 201) AND level:error"}}}`, 20},
		{`{"query":{"bool":{"filter":[{"range":{"@timestamp":{"gte":"2026-05-01T10:00:00Z","lt":"2026-05-01T11:00:00Z"}}},{"term":{"level.keyword":"error"}}]}}}`, 15},
		{`{"query":{"terms":{"level":["error","nope"]}}}`, 30},
		{`{"query":{"match":{"message":"finished 999"}}}`, 120},
		{`{"query":{"match":{"message":{"query":"finished 999","operator":"and"}}}}`, 0},
		{`{"query":{"match_phrase":{"message":"with status 201"}}}`, 40},
		{`{"query":{"exists":{"field":"level"}}}`, 120},
		{`{"query":{"range":{"@timestamp":{"gte":1777629600000,"lt":1777630200000}}}}`, 10},
	}
	for _, c := range counts {
		r := search("logs-*/_search?track_total_hits=true", c.q)
		if r.Hits.Total.Value != c.want {
			t.Errorf("%s: total %d, want %d", c.q, r.Hits.Total.Value, c.want)
		}
		code, _, body := do(t, "POST", srv.URL+"/logs/logs-kubernetes-*/_count", []byte(c.q))
		var cr struct{ Count int64 }
		_ = json.Unmarshal(body, &cr)
		if code != 200 || cr.Count != c.want {
			t.Errorf("count %s: %d %s", c.q, code, body)
		}
	}

	// Sorted pages, search_after, highlight.
	r := search("_search", `{"size":3,"sort":[{"@timestamp":{"order":"desc"}}],"query":{"query_string":{"query":"level:error"}},"highlight":{"fields":{"level":{}}}}`)
	if len(r.Hits.Hits) != 3 || r.Hits.Hits[0].ID != "d116" || r.Hits.Hits[0].Sort[0] != base.Add(116*time.Minute).UnixMilli() {
		t.Fatalf("page 1 %+v", r.Hits.Hits)
	}
	if got := r.Hits.Hits[0].Highlight["level"]; len(got) != 1 || got[0] != "<em>error</em>" {
		t.Errorf("highlight %v", r.Hits.Hits[0].Highlight)
	}
	if r.Hits.Hits[0].Source["kubernetes"].(map[string]any)["labels"].(map[string]any)["app.kubernetes.io/name"] != "api-server" {
		t.Errorf("source %v", r.Hits.Hits[0].Source)
	}
	after := r.Hits.Hits[2].Sort[0]
	r = search("_search", fmt.Sprintf(`{"size":3,"sort":[{"@timestamp":"desc"}],"search_after":[%d],"query":{"query_string":{"query":"level:error"}}}`, after))
	if len(r.Hits.Hits) != 3 || r.Hits.Hits[0].ID != "d104" {
		t.Fatalf("page 2 %+v", r.Hits.Hits)
	}

	// Aggregations.
	r = search("logs-*/_search", `{"size":0,"query":{"query_string":{"query":"status"}},"aggs":{"h":{"date_histogram":{"field":"@timestamp","fixed_interval":"30m"}},"lv":{"terms":{"field":"level.keyword","size":1}},"d":{"date_histogram":{"field":"@timestamp","calendar_interval":"day"}}}}`)
	h := r.Aggregations["h"]
	if len(h.Buckets) != 4 || h.Buckets[0].DocCount != 30 || h.Buckets[0].KeyAsString != "2026-05-01T10:00:00.000Z" || h.Buckets[0].Key.(float64) != float64(base.UnixMilli()) {
		t.Errorf("histogram %+v", h)
	}
	lv := r.Aggregations["lv"]
	if len(lv.Buckets) != 1 || lv.Buckets[0].Key != "info" || lv.Buckets[0].DocCount != 90 || lv.SumOther != 30 {
		t.Errorf("terms %+v", lv)
	}
	if d := r.Aggregations["d"]; len(d.Buckets) != 1 || d.Buckets[0].DocCount != 120 {
		t.Errorf("calendar histogram %+v", d)
	}

	// _cat/indices.
	code, _, body = do(t, "GET", srv.URL+"/logs/_cat/indices?format=json", nil)
	var cat []map[string]string
	if err := json.Unmarshal(body, &cat); code != 200 || err != nil || len(cat) != 2 || cat[0]["docs.count"] != "60" {
		t.Errorf("cat %d %s", code, body)
	}
	// Missing concrete index: 404; bad query: 400.
	if code, _, _ := do(t, "GET", srv.URL+"/logs/nope/_search", nil); code != 404 {
		t.Errorf("missing index: %d", code)
	}
	if code, _, _ := do(t, "POST", srv.URL+"/logs/_search", []byte(`{"query":{"query_string":{"query":"a AND (b"}}}`)); code != 400 {
		t.Errorf("bad query_string: %d", code)
	}
	// Delete an index.
	if code, _, b := do(t, "DELETE", srv.URL+"/logs/logs-kubernetes-ns0", nil); code != 200 {
		t.Fatalf("delete %d %s", code, b)
	}
	if r := search("logs-*/_search?track_total_hits=true", `{}`); r.Hits.Total.Value != 60 {
		t.Errorf("after delete total %d", r.Hits.Total.Value)
	}
	if code, _, b := do(t, "PUT", srv.URL+"/logs/logs-new", []byte(`{"settings":{}}`)); code != 200 {
		t.Fatalf("create %d %s", code, b)
	}
	if code, _, _ := do(t, "PUT", srv.URL+"/logs/logs-new", nil); code != 400 {
		t.Errorf("create twice %d", code)
	}
}

// TestHighlightRequireFieldMatch: a field is highlighted only with the
// words of clauses on that field (Elasticsearch's require_field_match,
// true by default), unless the request turns it off.
func TestHighlightRequireFieldMatch(t *testing.T) {
	srv := newTestServer(t, 0)
	bulk := `{"create":{"_index":"logs-a","_id":"x"}}` + "\n" +
		`{"@timestamp":"2026-05-01T10:00:00Z","message":"error while reading pod-a","level":"error","pod":"pod-a"}` + "\n"
	if code, _, body := do(t, "POST", srv.URL+"/logs/_bulk?refresh=true", []byte(bulk)); code != 200 || strings.Contains(string(body), `"errors":true`) {
		t.Fatalf("bulk %d %s", code, body)
	}
	cases := []struct {
		name, query string
		want        map[string][]string
	}{
		{"clause on another field", `{"query":{"query_string":{"query":"level:error"}},"highlight":{"fields":{"message":{},"level":{}}}}`,
			map[string][]string{"level": {"<em>error</em>"}}},
		{"require_field_match false", `{"query":{"query_string":{"query":"level:error"}},"highlight":{"require_field_match":false,"fields":{"message":{},"level":{}}}}`,
			map[string][]string{"level": {"<em>error</em>"}, "message": {"<em>error</em> while reading pod-a"}}},
		{"every field", `{"query":{"query_string":{"query":"reading"}},"highlight":{"fields":{"*":{}}}}`,
			map[string][]string{"message": {"error while <em>reading</em> pod-a"}}},
		{"keyword filter", `{"query":{"bool":{"must":[{"match":{"message":"reading"}}],"filter":[{"term":{"pod.keyword":"pod-a"}}]}},"highlight":{"fields":{"message":{},"pod":{}}}}`,
			map[string][]string{"message": {"error while <em>reading</em> pod-a"}}},
		{"field pattern", `{"query":{"query_string":{"query":"mess*:while"}},"highlight":{"fields":{"*":{}}}}`,
			map[string][]string{"message": {"error <em>while</em> reading pod-a"}}},
	}
	for _, c := range cases {
		code, _, body := do(t, "POST", srv.URL+"/logs/logs-a/_search", []byte(c.query))
		var r searchResp
		if code != 200 || json.Unmarshal(body, &r) != nil || len(r.Hits.Hits) != 1 {
			t.Fatalf("%s: %d %s", c.name, code, body)
		}
		got := r.Hits.Hits[0].Highlight
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s: highlight %v, want %v", c.name, got, c.want)
		}
	}
}
