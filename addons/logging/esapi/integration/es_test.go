// Package integration tests the embedded log store's Elasticsearch API
// through a real in-process server with go-elasticsearch.
package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	elasticsearch "github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esutil"
	"github.com/skiffhq/skiff/internal/testserver"
	"k8s.io/client-go/rest"
)

func esClient(t *testing.T, rc *rest.Config) *elasticsearch.Client {
	t.Helper()
	rt, err := rest.TransportFor(rc)
	if err != nil {
		t.Fatal(err)
	}
	es, err := elasticsearch.NewClient(elasticsearch.Config{
		Addresses:           []string{strings.TrimSuffix(rc.Host, "/") + "/logs"},
		Transport:           rt,
		CompressRequestBody: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func TestGoElasticsearchAgainstEmbeddedStore(t *testing.T) {
	s := testserver.Start(t)
	es := esClient(t, s.Config)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	info, err := es.Info(es.Info.WithContext(ctx))
	if err != nil {
		t.Fatalf("info: %v", err)
	}
	var root struct {
		Version struct{ Number string } `json:"version"`
	}
	if err := json.NewDecoder(info.Body).Decode(&root); err != nil || !strings.HasPrefix(root.Version.Number, "8.") {
		t.Fatalf("root document: %v %+v", err, root)
	}
	info.Body.Close()

	// 9,000 documents in three namespaces over 90 minutes, create ops
	// with deterministic ids, gzip bodies.
	const n = 9000
	base := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	index := func(bi esutil.BulkIndexer, from, to int, created, conflicts, failed *atomic.Int64) {
		for i := from; i < to; i++ {
			level := "info"
			if i%10 == 0 {
				level = "error"
			}
			doc := fmt.Sprintf(`{"@timestamp":%q,"message":"line %d of the test, level=%s","level":%q,"stream":"stdout","kubernetes":{"namespace_name":"ns-%d","pod_name":"pod-%d","labels":{"app":"web","app.kubernetes.io/name":"web"}}}`,
				base.Add(time.Duration(i)*600*time.Millisecond).Format(time.RFC3339Nano), i, level, level, i%3, i%5)
			err := bi.Add(ctx, esutil.BulkIndexerItem{
				Action: "create", Index: fmt.Sprintf("logs-kubernetes-ns-%d", i%3), DocumentID: fmt.Sprintf("doc-%06d", i),
				Body: strings.NewReader(doc),
				OnSuccess: func(context.Context, esutil.BulkIndexerItem, esutil.BulkIndexerResponseItem) {
					created.Add(1)
				},
				OnFailure: func(_ context.Context, _ esutil.BulkIndexerItem, res esutil.BulkIndexerResponseItem, err error) {
					if res.Status == http.StatusConflict {
						conflicts.Add(1)
					} else {
						failed.Add(1)
						t.Errorf("item failed: %d %v %+v", res.Status, err, res.Error)
					}
				},
			})
			if err != nil {
				t.Fatalf("add: %v", err)
			}
		}
	}
	var created, conflicts, failed atomic.Int64
	bi, err := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{Client: es, NumWorkers: 2, FlushBytes: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	index(bi, 0, n, &created, &conflicts, &failed)
	if err := bi.Close(ctx); err != nil {
		t.Fatalf("bulk indexer: %v", err)
	}
	if st := bi.Stats(); created.Load() != n || st.NumFailed != 0 || st.NumAdded != n {
		t.Fatalf("created %d, stats %+v", created.Load(), st)
	}
	// Replaying a range (a shipper restarting from an old checkpoint):
	// every item answers 409 and nothing is stored twice.
	created.Store(0)
	bi, _ = esutil.NewBulkIndexer(esutil.BulkIndexerConfig{Client: es, NumWorkers: 1})
	index(bi, 1000, 1500, &created, &conflicts, &failed)
	if err := bi.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if conflicts.Load() != 500 || created.Load() != 0 {
		t.Fatalf("replay: %d conflicts, %d created", conflicts.Load(), created.Load())
	}

	count := func(q string) int64 {
		t.Helper()
		res, err := es.Count(es.Count.WithContext(ctx), es.Count.WithIndex("logs-*"), es.Count.WithBody(strings.NewReader(q)))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var c struct{ Count int64 }
		if res.IsError() || json.NewDecoder(res.Body).Decode(&c) != nil {
			t.Fatalf("count %s: %s", q, res.String())
		}
		return c.Count
	}
	if got := count(`{"query":{"match_all":{}}}`); got != n {
		t.Fatalf("count all = %d, want %d", got, n)
	}
	if got := count(`{"query":{"query_string":{"query":"level:error AND kubernetes.namespace_name:\"ns-1\""}}}`); got != 300 {
		t.Fatalf("count errors in ns-1 = %d, want 300", got)
	}

	// query_string + time range + date_histogram + terms.
	body := fmt.Sprintf(`{"size":5,"track_total_hits":true,"sort":[{"@timestamp":"desc"}],
	  "query":{"bool":{"must":[{"query_string":{"query":"level:error OR message:\"line 1 of\""}}],
	    "filter":[{"range":{"@timestamp":{"gte":%q,"lt":%q}}}]}},
	  "aggs":{"per10m":{"date_histogram":{"field":"@timestamp","fixed_interval":"10m"}},
	          "ns":{"terms":{"field":"kubernetes.namespace_name.keyword","size":10}}}}`,
		base.Format(time.RFC3339), base.Add(30*time.Minute).Format(time.RFC3339))
	res, err := es.Search(es.Search.WithContext(ctx), es.Search.WithIndex("logs-*"), es.Search.WithBody(strings.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.IsError() {
		t.Fatalf("search: %s", raw)
	}
	var sr struct {
		Hits struct {
			Total struct {
				Value    int64
				Relation string
			}
			Hits []struct {
				ID   string `json:"_id"`
				Sort []int64
			}
		}
		Aggregations struct {
			Per10m struct {
				Buckets []struct {
					Key      int64
					DocCount int64 `json:"doc_count"`
				}
			}
			NS struct {
				Buckets []struct {
					Key      string
					DocCount int64 `json:"doc_count"`
				}
			}
		}
	}
	if err := json.Unmarshal(raw, &sr); err != nil {
		t.Fatal(err)
	}
	// 30 minutes = 3000 docs (0.6 s apart): 300 errors, plus "line 1 of".
	if sr.Hits.Total.Value != 301 || sr.Hits.Total.Relation != "eq" {
		t.Fatalf("total %+v", sr.Hits.Total)
	}
	if len(sr.Hits.Hits) != 5 || sr.Hits.Hits[0].ID != "doc-002990" || sr.Hits.Hits[0].Sort[0] != base.Add(2990*600*time.Millisecond).UnixMilli() {
		t.Fatalf("hits %+v", sr.Hits.Hits)
	}
	b := sr.Aggregations.Per10m.Buckets
	if len(b) != 3 || b[0].DocCount != 101 || b[1].DocCount != 100 || b[2].DocCount != 100 || b[0].Key != base.UnixMilli() {
		t.Fatalf("histogram %+v", b)
	}
	nsb := sr.Aggregations.NS.Buckets
	// Errors are every tenth line (100 per namespace); "line 1" is in ns-1.
	if len(nsb) != 3 || nsb[0].Key != "ns-1" || nsb[0].DocCount != 101 || nsb[1].Key != "ns-0" || nsb[1].DocCount != 100 || nsb[2].DocCount != 100 {
		t.Fatalf("terms %+v", nsb)
	}

	// _cat/indices in JSON.
	cat, err := es.Cat.Indices(es.Cat.Indices.WithContext(ctx), es.Cat.Indices.WithIndex("logs-*"), es.Cat.Indices.WithFormat("json"))
	if err != nil {
		t.Fatal(err)
	}
	var rows []map[string]string
	if err := json.NewDecoder(cat.Body).Decode(&rows); err != nil || len(rows) != 3 || rows[0]["docs.count"] != "3000" {
		t.Fatalf("cat indices: %v %v", err, rows)
	}
	cat.Body.Close()
}

func TestLogsAuthorization(t *testing.T) {
	s := testserver.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	doc := "{\"create\":{\"_index\":\"logs-kubernetes-default\",\"_id\":\"n1\"}}\n{\"message\":\"from a node\"}\n"

	// Anonymous: 401, as every other path.
	anon := rest.AnonymousClientConfig(s.Config)
	hc, err := rest.HTTPClientFor(anon)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Post(s.Config.Host+"/logs/_bulk", "application/x-ndjson", strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous bulk: %d", resp.StatusCode)
	}

	// A node may ship (POST /logs/_bulk, GET /logs/) but not search.
	nc, err := s.ComponentConfig("system:node:worker-1", []string{"system:nodes"})
	if err != nil {
		t.Fatal(err)
	}
	es := esClient(t, nc)
	res, err := es.Bulk(bytes.NewReader([]byte(doc)), es.Bulk.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("node bulk: %s", res.String())
	}
	info, err := es.Info(es.Info.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	info.Body.Close()
	if info.StatusCode != 200 {
		t.Fatalf("node info: %d", info.StatusCode)
	}
	hc, err = rest.HTTPClientFor(nc)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = hc.Get(s.Config.Host + "/logs/_search")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("node search: %d, want 403", resp.StatusCode)
	}
	// The document is there for an admin.
	ac := esClient(t, s.Config)
	cres, err := ac.Count(ac.Count.WithContext(ctx), ac.Count.WithIndex("logs-kubernetes-default"))
	if err != nil {
		t.Fatal(err)
	}
	defer cres.Body.Close()
	var c struct{ Count int64 }
	if err := json.NewDecoder(cres.Body).Decode(&c); err != nil || c.Count != 1 {
		t.Fatalf("count: %v %d", err, c.Count)
	}
}
