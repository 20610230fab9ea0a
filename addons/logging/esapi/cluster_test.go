package esapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiffhq/skiff/addons/logging/store"
)

// cluster is three servers' log stores over loopback HTTP, each asking
// the other two, and a reference store (not federated) holding every
// document.
type testCluster struct {
	srvs []*httptest.Server
	ref  *httptest.Server
	// local counts the requests each server got with ScopeLocal.
	local []atomic.Int64
	mu    sync.Mutex
	down  map[int]bool
}

func newTestCluster(t *testing.T) *testCluster {
	t.Helper()
	c := &testCluster{local: make([]atomic.Int64, 3), down: map[int]bool{}}
	c.ref = newTestServer(t, 0)
	for i := range 3 {
		st, err := store.Open(store.Options{Dir: t.TempDir(), NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		h := &Handler{Store: st, Peers: &Peers{Timeout: 5 * time.Second, List: func(ctx context.Context) ([]string, error) {
			var out []string
			for j, s := range c.srvs {
				if j != i {
					out = append(out, s.URL+"/logs")
				}
			}
			return out, nil
		}}}
		inner := http.StripPrefix("/logs", h)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c.mu.Lock()
			down := c.down[i]
			c.mu.Unlock()
			if down {
				// A server that stopped answering: its connection is
				// dropped.
				hj, _ := w.(http.Hijacker)
				conn, _, _ := hj.Hijack()
				_ = conn.Close()
				return
			}
			if r.Header.Get(ScopeHeader) == ScopeLocal {
				c.local[i].Add(1)
			}
			inner.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		c.srvs = append(c.srvs, srv)
	}
	return c
}

// bulk sends documents [from, to) to server i and to the reference.
func (c *testCluster) bulk(t *testing.T, i, from, to int) {
	t.Helper()
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var b strings.Builder
	for n := from; n < to; n++ {
		msg := fmt.Sprintf("line %d level=info", n)
		if n%10 == 0 {
			msg = fmt.Sprintf("line %d connection reset by peer", n)
		}
		fmt.Fprintf(&b, `{"create":{"_index":"logs-kubernetes-ns%d","_id":"d%d"}}`+"\n", n%3, n)
		fmt.Fprintf(&b, `{"@timestamp":%q,"message":%q,"kubernetes":{"namespace_name":"ns%d","pod_name":"pod-%d"},"level":"%s"}`+"\n",
			base.Add(time.Duration(n)*time.Second).Format(time.RFC3339Nano), msg, n%3, n%7, []string{"info", "error"}[n%2])
	}
	for _, u := range []string{c.srvs[i].URL, c.ref.URL} {
		code, _, body := do(t, "POST", u+"/logs/_bulk?refresh=true", []byte(b.String()))
		if code != 200 || strings.Contains(string(body), `"errors":true`) {
			t.Fatalf("bulk to %s: %d %s", u, code, body)
		}
	}
}

func (c *testCluster) setDown(i int, down bool) {
	c.mu.Lock()
	c.down[i] = down
	c.mu.Unlock()
}

type searchAnswer struct {
	Shards struct {
		Total, Successful, Failed int
		Failures                  []shardFailure
	} `json:"_shards"`
	Hits struct {
		Total struct {
			Value    int64
			Relation string
		}
		Hits []struct {
			ID        string         `json:"_id"`
			Index     string         `json:"_index"`
			Sort      []int64        `json:"sort"`
			Source    map[string]any `json:"_source"`
			Highlight map[string]any `json:"highlight"`
		}
	}
	Aggregations map[string]any `json:"aggregations"`
}

func search(t *testing.T, url, body string) searchAnswer {
	t.Helper()
	code, _, b := do(t, "POST", url, []byte(body))
	if code != 200 {
		t.Fatalf("search %s %s: %d %s", url, body, code, b)
	}
	var a searchAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return a
}

// TestClusterSearch: every server answers searches, counts and index
// lists for the logs of all three, the same as one store holding them all
// would, and says which server did not answer.
func TestClusterSearch(t *testing.T) {
	c := newTestCluster(t)
	// Contiguous runs per server, as agents that failed over would ship.
	c.bulk(t, 0, 0, 400)
	c.bulk(t, 1, 400, 700)
	c.bulk(t, 2, 700, 1000)
	c.bulk(t, 0, 1000, 1200)
	// logs-kubernetes-only1 exists on server 1 alone.
	var code int
	var b []byte
	for _, u := range []string{c.srvs[1].URL, c.ref.URL} {
		code, _, b = do(t, "POST", u+"/logs/logs-kubernetes-only1/_bulk", []byte(`{"create":{"_id":"x"}}`+"\n"+`{"@timestamp":"2026-03-01T01:00:00Z","message":"lonely"}`+"\n"))
		if code != 200 || strings.Contains(string(b), `"errors":true`) {
			t.Fatalf("bulk: %d %s", code, b)
		}
	}

	queries := []struct{ path, body string }{
		{"_search", `{"sort":[{"@timestamp":"desc"}],"size":10,"from":5}`},
		{"logs-kubernetes-ns*/_search", `{"query":{"query_string":{"query":"\"connection reset\" AND level:info"}},"sort":[{"@timestamp":"asc"}],"size":7,"track_total_hits":true}`},
		{"logs-kubernetes-ns1/_search", `{"size":0,"aggs":{"m":{"date_histogram":{"field":"@timestamp","fixed_interval":"1m"},"aggs":{"l":{"terms":{"field":"level"}}}},"p":{"terms":{"field":"kubernetes.pod_name","size":10}}}}`},
		{"_search", `{"query":{"match":{"message":"reset"}},"sort":["@timestamp"],"size":3,"highlight":{"fields":{"message":{}}},"_source":false}`},
		{"_search", `{"sort":[{"@timestamp":"asc"}],"size":5,"track_total_hits":100}`},
	}
	for i, q := range queries {
		want := search(t, c.ref.URL+"/logs/"+q.path, q.body)
		for s, srv := range c.srvs {
			got := search(t, srv.URL+"/logs/"+q.path, q.body)
			if got.Shards.Total != 3 || got.Shards.Successful != 3 || got.Shards.Failed != 0 {
				t.Fatalf("query %d on server %d: _shards %+v", i, s, got.Shards)
			}
			if !reflect.DeepEqual(got.Hits, want.Hits) {
				t.Fatalf("query %d on server %d: hits\n got %+v\nwant %+v", i, s, got.Hits, want.Hits)
			}
			if !reflect.DeepEqual(got.Aggregations, want.Aggregations) {
				t.Fatalf("query %d on server %d: aggregations\n got %v\nwant %v", i, s, got.Aggregations, want.Aggregations)
			}
		}
	}

	// Counts.
	for s, srv := range c.srvs {
		code, _, b := do(t, "GET", srv.URL+"/logs/logs-kubernetes-*/_count?q=level:error", nil)
		if code != 200 || !strings.HasPrefix(string(b), `{"count":600,"_shards":{"total":3,"successful":3,`) {
			t.Fatalf("count on server %d: %d %s", s, code, b)
		}
	}

	// Index lists: documents summed over the servers; an index that only
	// one server has is found through the others.
	code, _, b = do(t, "GET", c.srvs[2].URL+"/logs/_cat/indices?format=json&bytes=b&s=index", nil)
	var rows []map[string]string
	if err := json.Unmarshal(b, &rows); code != 200 || err != nil {
		t.Fatalf("_cat/indices: %d %s", code, b)
	}
	got := map[string]string{}
	for _, r := range rows {
		got[r["index"]] = r["docs.count"]
	}
	want := map[string]string{"logs-kubernetes-ns0": "400", "logs-kubernetes-ns1": "400", "logs-kubernetes-ns2": "400", "logs-kubernetes-only1": "1"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("_cat/indices on server 2: %v", got)
	}
	for _, s := range []int{0, 2} {
		if code, _, b := do(t, "GET", c.srvs[s].URL+"/logs/logs-kubernetes-only1", nil); code != 200 || !strings.Contains(string(b), `"logs-kubernetes-only1"`) {
			t.Fatalf("GET index on server %d: %d %s", s, code, b)
		}
		if a := search(t, c.srvs[s].URL+"/logs/logs-kubernetes-only1/_search", `{}`); a.Hits.Total.Value != 1 || a.Hits.Hits[0].ID != "x" {
			t.Fatalf("search of an index on another server, from server %d: %+v", s, a.Hits)
		}
		if code, _, b := do(t, "GET", c.srvs[s].URL+"/logs/logs-kubernetes-none/_search", nil); code != 404 || !strings.Contains(string(b), "index_not_found_exception") {
			t.Fatalf("search of an index no server has, on server %d: %d %s", s, code, b)
		}
	}

	// Asked with ScopeLocal, a server answers for its own store (and asks
	// nobody).
	before := c.local[1].Load() + c.local[2].Load()
	code, _, b = do(t, "GET", c.srvs[0].URL+"/logs/_count", nil, ScopeHeader, ScopeLocal)
	if code != 200 || !strings.HasPrefix(string(b), `{"count":600,"_shards":{"total":1,`) {
		t.Fatalf("local count on server 0: %d %s", code, b)
	}
	if after := c.local[1].Load() + c.local[2].Load(); after != before {
		t.Fatalf("a local request was passed on (%d requests)", after-before)
	}

	// A server that does not answer is a failed shard; the others answer.
	c.setDown(1, true)
	a := search(t, c.srvs[0].URL+"/logs/_search", `{"sort":[{"@timestamp":"desc"}],"size":1,"track_total_hits":true}`)
	if a.Shards.Total != 3 || a.Shards.Successful != 2 || a.Shards.Failed != 1 || len(a.Shards.Failures) != 1 ||
		a.Shards.Failures[0].Node != c.srvs[1].URL+"/logs" || a.Shards.Failures[0].Shard != 1 {
		t.Fatalf("_shards with server 1 down: %+v", a.Shards)
	}
	if a.Hits.Total.Value != 900 || a.Hits.Hits[0].ID != "d1199" {
		t.Fatalf("hits with server 1 down: total %d, first %+v", a.Hits.Total.Value, a.Hits.Hits)
	}
	c.setDown(1, false)

	// Deleting an index through one server deletes it on all.
	if code, _, b := do(t, "DELETE", c.srvs[2].URL+"/logs/logs-kubernetes-ns1", nil); code != 200 || string(b) != `{"acknowledged":true}` {
		t.Fatalf("delete: %d %s", code, b)
	}
	for s, srv := range c.srvs {
		code, _, b := do(t, "GET", srv.URL+"/logs/_cat/indices/logs-kubernetes-ns1?format=json", nil, ScopeHeader, ScopeLocal)
		if code != 200 || string(b) != "[]" {
			t.Fatalf("server %d after the delete: %d %s", s, code, b)
		}
	}
	if code, _, _ := do(t, "DELETE", c.srvs[0].URL+"/logs/logs-kubernetes-ns1", nil); code != 404 {
		t.Fatalf("second delete: %d, want 404", code)
	}
}
