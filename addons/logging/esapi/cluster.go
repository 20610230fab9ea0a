package esapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/skiffhq/skiff/addons/logging/store"
)

// In an HA cluster each server's store holds the logs that the agents
// connected to it shipped there, so one server's store is one shard of the
// cluster's logs (the way Elasticsearch spreads an index over nodes, with
// no replicas). A server answers searches for the whole cluster: it asks
// the other servers for their part with ScopeHeader set to ScopeLocal,
// and reduces the answers with its own (store.Merge). A server that does
// not answer is listed in _shards.failures; the rest is still answered,
// as Elasticsearch answers with partial results.

// ScopeHeader set to ScopeLocal asks a server for its own store only.
// Anyone may send it: it only narrows what is searched.
const (
	ScopeHeader = "X-Skiff-Logs-Scope"
	ScopeLocal  = "local"
)

// Peers are the other servers of the cluster, asked for their part of
// searches, counts and index lists, and told of index deletions.
type Peers struct {
	// List returns the base URLs of the other servers' log store APIs
	// (https://host:port/logs), without this server.
	List func(ctx context.Context) ([]string, error)
	// Client reaches them (authenticated as a server).
	Client *http.Client
	// Timeout bounds each peer's answer (default 10 s).
	Timeout time.Duration
}

// federated reports whether r is answered for the whole cluster.
func (h *Handler) federated(r *http.Request) bool {
	return h.Peers != nil && h.Peers.List != nil && r.Header.Get(ScopeHeader) != ScopeLocal
}

// shardInfo is a response's _shards: this server is shard 0, the peers
// follow in their listed order.
type shardInfo struct {
	total, successful int
	failures          []shardFailure
}

type shardFailure struct {
	Shard  int    `json:"shard"`
	Index  string `json:"index"`
	Node   string `json:"node"`
	Reason struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
	} `json:"reason"`
}

var shardsLocal = shardInfo{total: 1, successful: 1}

func (s shardInfo) json() []byte {
	out := fmt.Appendf(nil, `{"total":%d,"successful":%d,"skipped":0,"failed":%d`, s.total, s.successful, len(s.failures))
	if len(s.failures) > 0 {
		b, _ := json.Marshal(s.failures)
		out = append(append(out, `,"failures":`...), b...)
	}
	return append(out, '}')
}

// peerAnswer is one peer's answer to a request.
type peerAnswer struct {
	peer   string
	status int
	body   []byte
	err    error
}

func (a peerAnswer) failed() bool { return a.err != nil || a.status/100 != 2 }

func (a peerAnswer) reason() string {
	if a.err != nil {
		return a.err.Error()
	}
	var e struct {
		Error struct {
			Type   string `json:"type"`
			Reason string `json:"reason"`
		} `json:"error"`
	}
	if json.Unmarshal(a.body, &e) == nil && e.Error.Reason != "" {
		return fmt.Sprintf("HTTP %d: %s: %s", a.status, e.Error.Type, e.Error.Reason)
	}
	return fmt.Sprintf("HTTP %d: %.200s", a.status, a.body)
}

// maxPeerAnswer bounds a peer's answer (a page of at most 10,000 hits).
const maxPeerAnswer = 512 << 20

// askPeers sends the request to every peer at once and waits for all.
// path is relative to a peer's base URL ("_search", "idx/_count").
func (h *Handler) askPeers(ctx context.Context, method, path string, query url.Values, body []byte) ([]peerAnswer, error) {
	peers, err := h.Peers.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing the other servers: %w", err)
	}
	timeout := h.Peers.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	client := h.Peers.Client
	if client == nil {
		client = http.DefaultClient
	}
	answers := make([]peerAnswer, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Go(func() {
			a := &answers[i]
			a.peer = p
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			u := strings.TrimRight(p, "/") + "/" + path
			if len(query) > 0 {
				u += "?" + query.Encode()
			}
			var rd io.Reader
			if body != nil {
				rd = bytes.NewReader(body)
			}
			req, err := http.NewRequestWithContext(ctx, method, u, rd)
			if err != nil {
				a.err = err
				return
			}
			req.Header.Set(ScopeHeader, ScopeLocal)
			if body != nil {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := client.Do(req)
			if err != nil {
				a.err = err
				return
			}
			defer resp.Body.Close()
			a.status = resp.StatusCode
			a.body, a.err = io.ReadAll(io.LimitReader(resp.Body, maxPeerAnswer))
		})
	}
	wg.Wait()
	return answers, nil
}

// peerQuery is the request's query string for the peers, without what
// the merge does itself.
func peerQuery(r *http.Request, drop ...string) url.Values {
	q := url.Values{}
	for k, v := range r.URL.Query() {
		if !slices.Contains(drop, k) {
			q[k] = v
		}
	}
	return q
}

// gather checks that a concrete index named in the path exists on some
// server (404 otherwise, unless ignore_unavailable), then runs the local
// part while it asks the peers (told to ignore indices they lack); it
// returns the peers' answers that succeeded, in order, and the shard counts.
func (h *Handler) gather(r *http.Request, index, path string, query url.Values, body []byte, local func() error) ([]peerAnswer, shardInfo, error) {
	if _, err := h.indicesFor(r, index); err != nil {
		if err := h.clusterHas(r, index); err != nil {
			return nil, shardInfo{}, err
		}
	}
	query.Set("ignore_unavailable", "true")
	var answers []peerAnswer
	var listErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		answers, listErr = h.askPeers(r.Context(), http.MethodPost, path, query, body)
	}()
	localErr := local()
	<-done
	if localErr != nil {
		return nil, shardInfo{}, localErr
	}
	shards := shardInfo{total: 1 + len(answers), successful: 1}
	idx := index
	if idx == "" {
		idx = "_all"
	}
	fail := func(shard int, node, reason string) {
		f := shardFailure{Shard: shard, Index: idx, Node: node}
		f.Reason.Type, f.Reason.Reason = "node_not_available_exception", reason
		shards.failures = append(shards.failures, f)
	}
	if listErr != nil {
		shards.total++
		fail(1, "", listErr.Error())
	}
	var ok []peerAnswer
	for i, a := range answers {
		if a.failed() {
			fail(i+1, a.peer, a.reason())
			continue
		}
		shards.successful++
		ok = append(ok, a)
	}
	return ok, shards, nil
}

// clusterHas answers 404 for the first concrete index of expr that no
// server has.
func (h *Handler) clusterHas(r *http.Request, expr string) error {
	have := map[string]bool{}
	for _, in := range h.clusterIndices(r, expr) {
		have[in.Name] = true
	}
	for _, n := range strings.Split(expr, ",") {
		if n == "" || strings.ContainsAny(n, "*?") || strings.HasPrefix(n, "-") {
			continue
		}
		if !have[n] {
			return fmt.Errorf("%w: no such index [%s]", store.ErrIndexNotFound, n)
		}
	}
	return nil
}

// searchCluster answers a search over every server's store.
func (h *Handler) searchCluster(r *http.Request, index string, req store.SearchRequest, raw []byte) (*store.SearchResult, shardInfo, error) {
	window := req.From + req.Size
	body, err := peerSearchBody(raw, window)
	if err != nil {
		return nil, shardInfo{}, err
	}
	sub := req
	sub.From, sub.Size = 0, window
	var local *store.SearchResult
	answers, shards, err := h.gather(r, index, clusterPath(index, "_search"),
		peerQuery(r, "from", "size", "rest_total_hits_as_int", "_source", "ignore_unavailable"), body,
		func() (err error) { local, err = h.Store.Search(r.Context(), sub); return err })
	if err != nil {
		return nil, shards, err
	}
	results := []*store.SearchResult{local}
	for _, a := range answers {
		res, err := decodeSearchResult(a.body, req.Aggs)
		if err != nil {
			return nil, shards, fmt.Errorf("answer of %s: %w", a.peer, err)
		}
		results = append(results, res)
	}
	return store.Merge(req, results), shards, nil
}

// countCluster answers a count over every server's store.
func (h *Handler) countCluster(r *http.Request, index string, req store.SearchRequest, raw []byte) (int64, shardInfo, error) {
	var n int64
	answers, shards, err := h.gather(r, index, clusterPath(index, "_count"), peerQuery(r, "ignore_unavailable"), raw,
		func() (err error) { n, err = h.Store.Count(r.Context(), req.Indices, req.Query); return err })
	if err != nil {
		return 0, shards, err
	}
	for _, a := range answers {
		var c struct {
			Count int64 `json:"count"`
		}
		if err := json.Unmarshal(a.body, &c); err != nil {
			return 0, shards, fmt.Errorf("answer of %s: %w", a.peer, err)
		}
		n += c.Count
	}
	return n, shards, nil
}

func clusterPath(index, op string) string {
	if index == "" {
		return op
	}
	return url.PathEscape(index) + "/" + op
}

// peerSearchBody is the search body for the peers: the first window hits
// (the merge cuts the page), with their sources (highlighting and
// _source filtering are done once, on the merged page).
func peerSearchBody(raw []byte, window int) ([]byte, error) {
	m := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, badRequest("request body: %v", err)
		}
	}
	delete(m, "highlight")
	delete(m, "_source")
	m["from"] = json.RawMessage("0")
	m["size"] = json.RawMessage(strconv.Itoa(window))
	return json.Marshal(m)
}

// SearchHits is the hits part of a _search answer, for its Go readers
// (the servers of a cluster reading each other's, the dashboard backend).
type SearchHits struct {
	Took int64 `json:"took"`
	Hits struct {
		Total struct {
			Value    int64  `json:"value"`
			Relation string `json:"relation"`
		} `json:"total"`
		Hits []SearchHit `json:"hits"`
	} `json:"hits"`
}

// SearchHit is one hit of a _search answer.
type SearchHit struct {
	Index     string              `json:"_index"`
	ID        string              `json:"_id"`
	Source    json.RawMessage     `json:"_source"`
	Sort      []int64             `json:"sort"`
	Highlight map[string][]string `json:"highlight"`
}

// decodeSearchResult reads a _search answer (as search renders it) back
// into a store result; reqs says which aggregation is which.
func decodeSearchResult(body []byte, reqs []store.AggRequest) (*store.SearchResult, error) {
	var a struct {
		SearchHits
		Aggregations map[string]json.RawMessage `json:"aggregations"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, err
	}
	res := &store.SearchResult{Total: a.Hits.Total.Value, TotalExact: a.Hits.Total.Relation != "gte"}
	for _, h := range a.Hits.Hits {
		res.Hits = append(res.Hits, store.Hit{Index: h.Index, ID: h.ID, Source: h.Source, Sort: h.Sort})
	}
	var err error
	res.Aggs, err = decodeAggs(reqs, a.Aggregations)
	return res, err
}

func decodeAggs(reqs []store.AggRequest, raw map[string]json.RawMessage) ([]store.AggResult, error) {
	var out []store.AggResult
	for _, q := range reqs {
		var a struct {
			Buckets  []map[string]json.RawMessage `json:"buckets"`
			SumOther int64                        `json:"sum_other_doc_count"`
		}
		if v, ok := raw[q.Name]; ok {
			if err := json.Unmarshal(v, &a); err != nil {
				return nil, fmt.Errorf("aggregation %s: %w", q.Name, err)
			}
		}
		res := store.AggResult{Name: q.Name, Date: q.DateHistogram != nil, SumOther: a.SumOther}
		if res.Date {
			res.Location = q.DateHistogram.Location
		}
		for _, m := range a.Buckets {
			var b store.Bucket
			if err := json.Unmarshal(m["doc_count"], &b.Count); err != nil {
				return nil, fmt.Errorf("aggregation %s: doc_count: %w", q.Name, err)
			}
			key := bytes.TrimSpace(m["key"])
			switch {
			case res.Date:
				if err := json.Unmarshal(key, &b.Key); err != nil {
					return nil, fmt.Errorf("aggregation %s: key: %w", q.Name, err)
				}
			case len(key) > 0 && key[0] == '"':
				if err := json.Unmarshal(key, &b.KeyString); err != nil {
					return nil, fmt.Errorf("aggregation %s: key: %w", q.Name, err)
				}
			case len(key) == 0:
				return nil, fmt.Errorf("aggregation %s: a bucket without a key", q.Name)
			default:
				b.KeyString, b.KeyRaw = string(key), true
			}
			sub, err := decodeAggs(q.Aggs, m)
			if err != nil {
				return nil, err
			}
			b.Aggs = sub
			res.Buckets = append(res.Buckets, b)
		}
		out = append(out, res)
	}
	return out, nil
}

// clusterIndices lists the indices matching pattern on every server,
// merged by name (documents and bytes summed; the oldest creation and its
// uid kept). Servers that did not answer are left out.
func (h *Handler) clusterIndices(r *http.Request, pattern string) []store.IndexInfo {
	infos := h.Store.Indices(pattern)
	if !h.federated(r) {
		return infos
	}
	path := "_cat/indices"
	if pattern != "" {
		path += "/" + url.PathEscape(pattern)
	}
	q := url.Values{"format": {"json"}, "bytes": {"b"}, "h": {"index,uuid,docs.count,store.size,creation.date"}}
	answers, err := h.askPeers(r.Context(), http.MethodGet, path, q, nil)
	if err != nil {
		h.logger().Warn("log store: other servers' indices not listed", "err", err)
		return infos
	}
	byName := map[string]int{}
	for i, in := range infos {
		byName[in.Name] = i
	}
	for _, a := range answers {
		if a.failed() {
			h.logger().Warn("log store: a server's indices not listed", "server", a.peer, "err", a.reason())
			continue
		}
		var rows []map[string]string
		if err := json.Unmarshal(a.body, &rows); err != nil {
			h.logger().Warn("log store: a server's indices not listed", "server", a.peer, "err", err)
			continue
		}
		for _, row := range rows {
			in := store.IndexInfo{Name: row["index"], UID: row["uuid"]}
			in.Docs, _ = strconv.ParseInt(row["docs.count"], 10, 64)
			in.Bytes, _ = strconv.ParseInt(row["store.size"], 10, 64)
			if ms, err := strconv.ParseInt(row["creation.date"], 10, 64); err == nil {
				in.Created = time.UnixMilli(ms)
			}
			i, ok := byName[in.Name]
			if !ok {
				byName[in.Name] = len(infos)
				infos = append(infos, in)
				continue
			}
			cur := &infos[i]
			cur.Docs += in.Docs
			cur.Bytes += in.Bytes
			if !in.Created.IsZero() && (cur.Created.IsZero() || in.Created.Before(cur.Created)) {
				cur.Created, cur.UID = in.Created, in.UID
			}
		}
	}
	slices.SortFunc(infos, func(a, b store.IndexInfo) int { return strings.Compare(a.Name, b.Name) })
	return infos
}

// deletePeers deletes names on the other servers (those without them
// ignore it); it reports whether every server acknowledged.
func (h *Handler) deletePeers(r *http.Request, names []string) bool {
	answers, err := h.askPeers(r.Context(), http.MethodDelete, url.PathEscape(strings.Join(names, ",")), url.Values{"ignore_unavailable": {"true"}}, nil)
	if err != nil {
		h.logger().Warn("log store: index deletion not sent to the other servers", "indices", names, "err", err)
		return false
	}
	acked := true
	for _, a := range answers {
		if a.failed() {
			h.logger().Warn("log store: a server did not delete the indices", "server", a.peer, "indices", names, "err", a.reason())
			acked = false
		}
	}
	return acked
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}
