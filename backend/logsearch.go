package backend

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/skiffhq/skiff/addons/logging/esapi"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

// Log search (issue #12): the dashboard forwards searches to the embedded
// log store (addons/logging) that the API server serves under /logs/,
// always with the user's own credentials, so the API server's RBAC for
// the non-resource path /logs/* (verb get) decides whether the user may
// search at all. The store cannot tell namespaces apart for authorization,
// so the backend narrows every search to the namespaces in which the user
// may `get pods/log` (the permission `kubectl logs` needs), from the
// user's SelfSubjectAccessReviews: cluster-wide permission means no
// narrowing; otherwise a terms filter on kubernetes.namespace_name.
//
//	GET /api/logsearch?q=&from=&to=&f=field:value&size=&order=desc|asc&after=<ms>&histogram=1&facets=1
//	GET /api/logsearch/context?namespace=&podId=&pod=&container=&ts=<ms>&n=
//
// from/to are epoch milliseconds or RFC 3339 (default: the last 15
// minutes); f filters repeat (the same field: any of the values; different
// fields: all of them). Bad requests and query_string syntax errors answer
// 400 with the store's message.

const (
	logIndex            = "logs-*"
	logMaxSize          = 1000
	logDefaultSize      = 200
	logMaxRange         = 31 * 24 * time.Hour
	logMaxQuery         = 4096
	logMaxFilters       = 32
	logMaxFilterValue   = 1024
	logMaxContext       = 200
	logFacetSize        = 10
	logHistogramBuckets = 120
	logAccessTTL        = 30 * time.Second
	logMaxNamespaces    = 500
	logMaxAnswer        = 64 << 20
	// Markers around highlighted words: private-use characters that log
	// lines do not carry, so the browser can split on them and render the
	// text without ever parsing HTML.
	hlPre  = "\ue000"
	hlPost = "\ue001"
)

// logFields maps the UI's filter and facet names to document fields (the
// shipper's Fluent Bit-style mapping). "label.<key>" filters on
// kubernetes.labels.<key>.
var logFields = map[string]string{
	"namespace": "kubernetes.namespace_name",
	"pod":       "kubernetes.pod_name",
	"podId":     "kubernetes.pod_id",
	"container": "kubernetes.container_name",
	"host":      "kubernetes.host",
	"stream":    "stream",
	"level":     "level",
}

// logFacets are the fields whose values are counted for the filter panel.
var logFacets = []string{"namespace", "pod", "container", "host", "stream", "level"}

var logHistogramIntervals = []time.Duration{
	time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second,
	time.Minute, 5 * time.Minute, 10 * time.Minute, 30 * time.Minute,
	time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
}

// errLogRequest is a request the backend refuses before asking the store.
var errLogRequest = errors.New("bad log search request")

func logFieldFor(name string) (string, bool) {
	if f, ok := logFields[name]; ok {
		return f, true
	}
	if k, ok := strings.CutPrefix(name, "label."); ok && k != "" && len(k) <= 317 && !strings.ContainsAny(k, "*?\"\\") {
		return "kubernetes.labels." + k, true
	}
	return "", false
}

// logSearchRequest is a validated search.
type logSearchRequest struct {
	query     string
	from, to  time.Time
	filters   map[string][]string // UI field name → values
	size      int
	asc       bool
	after     *int64
	histogram bool
	facets    bool
}

func parseLogTime(s string, def time.Time) (time.Time, error) {
	if s == "" {
		return def, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.UnixMilli(n), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: time %q is neither epoch milliseconds nor RFC 3339", errLogRequest, s)
	}
	return t, nil
}

func parseLogSearch(q url.Values, now time.Time) (*logSearchRequest, error) {
	req := &logSearchRequest{query: strings.TrimSpace(q.Get("q")), filters: map[string][]string{}, size: logDefaultSize}
	if len(req.query) > logMaxQuery {
		return nil, fmt.Errorf("%w: the query is longer than %d bytes", errLogRequest, logMaxQuery)
	}
	var err error
	if req.to, err = parseLogTime(q.Get("to"), now); err != nil {
		return nil, err
	}
	if req.from, err = parseLogTime(q.Get("from"), req.to.Add(-15*time.Minute)); err != nil {
		return nil, err
	}
	if !req.from.Before(req.to) {
		return nil, fmt.Errorf("%w: from must be before to", errLogRequest)
	}
	if req.to.Sub(req.from) > logMaxRange {
		return nil, fmt.Errorf("%w: the time range is longer than %d days", errLogRequest, int(logMaxRange.Hours()/24))
	}
	fs := q["f"]
	if len(fs) > logMaxFilters {
		return nil, fmt.Errorf("%w: more than %d filters", errLogRequest, logMaxFilters)
	}
	for _, f := range fs {
		name, val, ok := strings.Cut(f, ":")
		if !ok || val == "" || len(val) > logMaxFilterValue {
			return nil, fmt.Errorf("%w: filter %q is not field:value", errLogRequest, f)
		}
		if _, ok := logFieldFor(name); !ok {
			return nil, fmt.Errorf("%w: cannot filter on %q", errLogRequest, name)
		}
		if !slices.Contains(req.filters[name], val) {
			req.filters[name] = append(req.filters[name], val)
		}
	}
	if v := q.Get("size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > logMaxSize {
			return nil, fmt.Errorf("%w: size must be 0..%d", errLogRequest, logMaxSize)
		}
		req.size = n
	}
	switch q.Get("order") {
	case "", "desc":
	case "asc":
		req.asc = true
	default:
		return nil, fmt.Errorf("%w: order is asc or desc", errLogRequest)
	}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: after must be epoch milliseconds", errLogRequest)
		}
		req.after = &n
	}
	req.histogram = q.Get("histogram") == "1"
	req.facets = q.Get("facets") == "1"
	return req, nil
}

// histogramInterval is the smallest of the fixed intervals that divides
// the range into at most logHistogramBuckets buckets.
func histogramInterval(d time.Duration) time.Duration {
	for _, iv := range logHistogramIntervals {
		if d/iv <= logHistogramBuckets {
			return iv
		}
	}
	return logHistogramIntervals[len(logHistogramIntervals)-1]
}

func fixedInterval(d time.Duration) string {
	switch {
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	default:
		return fmt.Sprintf("%ds", d/time.Second)
	}
}

type jsonObj = map[string]any

// exact matches a field's whole value (the store's .keyword sub-field).
func exact(field string, values []string) jsonObj {
	if len(values) == 1 {
		return jsonObj{"term": jsonObj{field + ".keyword": values[0]}}
	}
	return jsonObj{"terms": jsonObj{field + ".keyword": values}}
}

// storeQuery is the bool query of a search: the user's query_string, the
// time range, the filters and the namespaces the user may read (nil: all).
func (req *logSearchRequest) storeQuery(namespaces []string) jsonObj {
	var must []any
	if req.query != "" {
		must = append(must, jsonObj{"query_string": jsonObj{"query": req.query, "default_field": "message", "default_operator": "AND"}})
	}
	filter := []any{jsonObj{"range": jsonObj{"@timestamp": jsonObj{
		"gte": req.from.UnixMilli(), "lte": req.to.UnixMilli(), "format": "epoch_millis",
	}}}}
	names := make([]string, 0, len(req.filters))
	for n := range req.filters {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f, _ := logFieldFor(n)
		filter = append(filter, exact(f, req.filters[n]))
	}
	if namespaces != nil {
		filter = append(filter, exact(logFields["namespace"], namespaces))
	}
	b := jsonObj{"filter": filter}
	if len(must) > 0 {
		b["must"] = must
	}
	return jsonObj{"bool": b}
}

func (req *logSearchRequest) body(namespaces []string) jsonObj {
	order := "desc"
	if req.asc {
		order = "asc"
	}
	body := jsonObj{
		"query":            req.storeQuery(namespaces),
		"size":             req.size,
		"sort":             []any{jsonObj{"@timestamp": jsonObj{"order": order}}},
		"track_total_hits": true,
		"highlight": jsonObj{
			"fields":   jsonObj{"message": jsonObj{}},
			"pre_tags": []string{hlPre}, "post_tags": []string{hlPost},
		},
	}
	if req.after != nil {
		body["search_after"] = []int64{*req.after}
	}
	aggs := jsonObj{}
	if req.histogram {
		iv := histogramInterval(req.to.Sub(req.from))
		aggs["histogram"] = jsonObj{"date_histogram": jsonObj{
			"field": "@timestamp", "fixed_interval": fixedInterval(iv), "min_doc_count": 0,
			"extended_bounds": jsonObj{"min": req.from.UnixMilli(), "max": req.to.UnixMilli()},
		}}
	}
	if req.facets {
		for _, f := range logFacets {
			aggs["facet_"+f] = jsonObj{"terms": jsonObj{"field": logFields[f] + ".keyword", "size": logFacetSize}}
		}
	}
	if len(aggs) > 0 {
		body["aggs"] = aggs
	}
	return body
}

// esSearchResponse is the part of the store's answer the backend reads.
type esSearchResponse struct {
	esapi.SearchHits
	Aggregations map[string]struct {
		Buckets []struct {
			Key      json.RawMessage `json:"key"`
			DocCount int64           `json:"doc_count"`
		} `json:"buckets"`
		SumOther int64 `json:"sum_other_doc_count"`
	} `json:"aggregations"`
}

// LogHit is one log line in a search answer.
type LogHit struct {
	ID     string          `json:"id"`
	Index  string          `json:"index"`
	Time   int64           `json:"ts"`
	Source json.RawMessage `json:"source"`
	// Highlight is the message with matched words between U+E000 and
	// U+E001 (absent when nothing in the message matched).
	Highlight string `json:"highlight,omitempty"`
}

// LogBucket is a histogram bar or a facet value.
type LogBucket struct {
	Key   int64  `json:"key,omitempty"`
	Value string `json:"value,omitempty"`
	Count int64  `json:"count"`
}

// LogSearchResult is the answer of /api/logsearch.
type LogSearchResult struct {
	Total         int64                  `json:"total"`
	TotalRelation string                 `json:"totalRelation"`
	Took          int64                  `json:"took"`
	Hits          []LogHit               `json:"hits"`
	Interval      int64                  `json:"interval,omitempty"`
	Histogram     []LogBucket            `json:"histogram,omitempty"`
	Facets        map[string][]LogBucket `json:"facets,omitempty"`
	FacetOther    map[string]int64       `json:"facetOther,omitempty"`
	// Namespaces lists the namespaces searched when the user may not read
	// logs in all of them (absent: all).
	Namespaces []string `json:"namespaces,omitempty"`
}

// logStoreError is a non-2xx answer of the store or the API server.
type logStoreError struct {
	code int
	msg  string
}

func (e *logStoreError) Error() string { return e.msg }

// searchStore sends a _search to the log store through the API server
// with the user's credentials (GET with a body, so that RBAC's verb is
// "get" and a search-only role needs no "post", which would allow _bulk).
func searchStore(ctx context.Context, sess *session, body jsonObj) (*esSearchResponse, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode search: %w", err)
	}
	// The TLS transport is shared (client-go caches it per TLS config);
	// the client only adds the user's bearer token.
	hc, err := rest.HTTPClientFor(sess.rest)
	if err != nil {
		return nil, fmt.Errorf("log store client: %w", err)
	}
	u := strings.TrimRight(sess.rest.Host, "/") + "/logs/" + logIndex + "/_search?ignore_unavailable=true"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("search request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("log store: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, logMaxAnswer+1))
	if err != nil {
		return nil, fmt.Errorf("log store: %w", err)
	}
	if len(b) > logMaxAnswer {
		return nil, &logStoreError{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("the log store's answer is larger than %d MiB: ask for fewer lines or a narrower search", logMaxAnswer>>20)}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, storeError(resp.StatusCode, b)
	}
	var out esSearchResponse
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("log store answer: %w", err)
	}
	return &out, nil
}

// storeError reads an Elasticsearch error ({"error":{"reason"}}) or a
// Kubernetes Status ({"message"}) into a message for the browser.
func storeError(code int, b []byte) error {
	var es struct {
		Error struct {
			Type   string `json:"type"`
			Reason string `json:"reason"`
		} `json:"error"`
		Message string `json:"message"`
	}
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &es) == nil {
		switch {
		case es.Error.Reason != "":
			msg = es.Error.Reason
		case es.Message != "":
			msg = es.Message
		}
	}
	if len(msg) > 2000 {
		msg = msg[:2000] + "…"
	}
	if code == http.StatusNotFound && msg == "" {
		msg = "the log store is not served by this API server (is the logstore add-on disabled?)"
	}
	switch code {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound,
		http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
	default:
		code = http.StatusBadGateway
	}
	return &logStoreError{code: code, msg: msg}
}

func writeLogError(w http.ResponseWriter, err error) {
	var se *logStoreError
	switch {
	case errors.Is(err, errLogRequest):
		writeError(w, http.StatusBadRequest, strings.TrimPrefix(err.Error(), errLogRequest.Error()+": "))
	case errors.As(err, &se):
		writeError(w, se.code, se.msg)
	case errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusGatewayTimeout, err.Error())
	default:
		writeAPIError(w, err)
	}
}

// logSearch answers GET /api/logsearch.
func (s *Server) logSearch(w http.ResponseWriter, r *http.Request) {
	sess := sessionFrom(r.Context())
	req, err := parseLogSearch(r.URL.Query(), time.Now())
	if err != nil {
		writeLogError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	namespaces, err := s.logNamespaces(ctx, sess, req.from, req.to, req.filters["namespace"])
	if err != nil {
		writeLogError(w, err)
		return
	}
	if namespaces != nil && len(namespaces) == 0 {
		// No namespace with logs in the range: nothing to search.
		writeJSON(w, http.StatusOK, LogSearchResult{Hits: []LogHit{}, TotalRelation: "eq"})
		return
	}
	res, err := searchStore(ctx, sess, req.body(namespaces))
	if err != nil {
		writeLogError(w, err)
		return
	}
	out := LogSearchResult{Total: res.Hits.Total.Value, TotalRelation: res.Hits.Total.Relation, Took: res.Took, Hits: hitsOf(res), Namespaces: namespaces}
	if req.histogram {
		out.Interval = histogramInterval(req.to.Sub(req.from)).Milliseconds()
		for _, b := range res.Aggregations["histogram"].Buckets {
			k, _ := strconv.ParseInt(string(b.Key), 10, 64)
			out.Histogram = append(out.Histogram, LogBucket{Key: k, Count: b.DocCount})
		}
	}
	if req.facets {
		out.Facets, out.FacetOther = map[string][]LogBucket{}, map[string]int64{}
		for _, f := range logFacets {
			a := res.Aggregations["facet_"+f]
			list := []LogBucket{}
			for _, b := range a.Buckets {
				var v string
				if json.Unmarshal(b.Key, &v) != nil {
					v = string(b.Key)
				}
				list = append(list, LogBucket{Value: v, Count: b.DocCount})
			}
			out.Facets[f] = list
			if a.SumOther > 0 {
				out.FacetOther[f] = a.SumOther
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func hitsOf(res *esSearchResponse) []LogHit {
	hits := make([]LogHit, 0, len(res.Hits.Hits))
	for _, h := range res.Hits.Hits {
		lh := LogHit{ID: h.ID, Index: h.Index, Source: h.Source}
		if len(h.Sort) > 0 {
			lh.Time = h.Sort[0]
		}
		if m := h.Highlight["message"]; len(m) > 0 {
			lh.Highlight = m[0]
		}
		hits = append(hits, lh)
	}
	return hits
}

// logContext answers GET /api/logsearch/context: the n lines before and
// after a time in one container of one pod (pod uid + container name,
// sorted by time), the line itself included.
func (s *Server) logContext(w http.ResponseWriter, r *http.Request) {
	sess := sessionFrom(r.Context())
	q := r.URL.Query()
	ns, container := q.Get("namespace"), q.Get("container")
	podID, pod := q.Get("podId"), q.Get("pod")
	if ns == "" || container == "" || (podID == "" && pod == "") {
		writeError(w, http.StatusBadRequest, "namespace, container and podId (or pod) are required")
		return
	}
	ts, err := strconv.ParseInt(q.Get("ts"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "ts must be epoch milliseconds")
		return
	}
	n := 20
	if v := q.Get("n"); v != "" {
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > logMaxContext {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("n must be 1..%d", logMaxContext))
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	t := time.UnixMilli(ts)
	if _, err := s.logNamespaces(ctx, sess, t, t, []string{ns}); err != nil {
		writeLogError(w, err)
		return
	}
	filters := map[string][]string{"namespace": {ns}, "container": {container}}
	if podID != "" {
		filters["podId"] = []string{podID}
	} else {
		filters["pod"] = []string{pod}
	}
	// The same millisecond may hold several lines: both sides include ts
	// and the merge drops duplicates. Older lines: newest first, reversed.
	before := &logSearchRequest{from: t.Add(-logMaxRange), to: t, filters: filters, size: n + 50}
	after := &logSearchRequest{from: t, to: t.Add(logMaxRange), filters: filters, size: n + 50, asc: true}
	var rb, ra *esSearchResponse
	var errB, errA error
	var wg sync.WaitGroup
	wg.Go(func() { rb, errB = searchStore(ctx, sess, before.body(nil)) })
	wg.Go(func() { ra, errA = searchStore(ctx, sess, after.body(nil)) })
	wg.Wait()
	if err := errors.Join(errB, errA); err != nil {
		writeLogError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"hits": mergeContext(hitsOf(rb), hitsOf(ra), ts, n)})
}

// mergeContext joins the lines up to ts (newest first) and from ts
// (oldest first) into one time-ordered list without duplicates: n lines
// before ts, the lines at ts, n lines after.
func mergeContext(before, after []LogHit, ts int64, n int) []LogHit {
	seen := map[string]bool{}
	var older, at, newer []LogHit
	for _, h := range before {
		if seen[h.ID] {
			continue
		}
		seen[h.ID] = true
		if h.Time == ts {
			at = append(at, h)
		} else if len(older) < n {
			older = append(older, h)
		}
	}
	for _, h := range after {
		if seen[h.ID] {
			continue
		}
		seen[h.ID] = true
		if h.Time == ts {
			at = append(at, h)
		} else if len(newer) < n {
			newer = append(newer, h)
		}
	}
	slices.Reverse(older)
	out := append(older, at...)
	return append(out, newer...)
}

// logAccess caches, per session, the answers of the user's access
// reviews for `get pods/log` (logAccessTTL).
type logAccess struct {
	mu sync.Mutex
	m  map[string]*logAccessEntry // session id →
}

type logAccessEntry struct {
	expires time.Time
	all     *bool
	ns      map[string]bool
}

var logAccessCache = &logAccess{m: map[string]*logAccessEntry{}}

func (a *logAccess) entry(sessID string) *logAccessEntry {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	e := a.m[sessID]
	if e == nil || now.After(e.expires) {
		for id, o := range a.m {
			if now.After(o.expires) {
				delete(a.m, id)
			}
		}
		e = &logAccessEntry{expires: now.Add(logAccessTTL), ns: map[string]bool{}}
		a.m[sessID] = e
	}
	return e
}

func (a *logAccess) get(sessID, ns string) (allowed, known bool) {
	e := a.entry(sessID)
	a.mu.Lock()
	defer a.mu.Unlock()
	if ns == "" {
		if e.all == nil {
			return false, false
		}
		return *e.all, true
	}
	allowed, known = e.ns[ns]
	return allowed, known
}

func (a *logAccess) set(sessID, ns string, allowed bool) {
	e := a.entry(sessID)
	a.mu.Lock()
	defer a.mu.Unlock()
	if ns == "" {
		e.all = &allowed
		return
	}
	e.ns[ns] = allowed
}

var podsLog = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

// canReadLogs answers (cached) whether the user may get pods/log in ns
// ("" = in every namespace).
func canReadLogs(ctx context.Context, sess *session, ns string) (bool, error) {
	if ok, known := logAccessCache.get(sess.id, ns); known {
		return ok, nil
	}
	ok, err := canI(ctx, sess.client, "get", podsLog, ns, "log")
	if err != nil {
		return false, fmt.Errorf("access review for pods/log in %q: %w", ns, err)
	}
	logAccessCache.set(sess.id, ns, ok)
	return ok, nil
}

// logNamespaces returns nil when the user may read logs in every
// namespace, else the namespaces (of wanted, or of those with logs in the
// time range) in which the user may. Asking explicitly for a namespace the
// user may not read is a 403, as is having none.
func (s *Server) logNamespaces(ctx context.Context, sess *session, from, to time.Time, wanted []string) ([]string, error) {
	all, err := canReadLogs(ctx, sess, "")
	if err != nil {
		return nil, err
	}
	if all {
		return nil, nil
	}
	candidates := wanted
	if len(candidates) == 0 {
		// Which namespaces have logs in the range: asked of the store as
		// the user, who may search it (RBAC on /logs/*) but not read all.
		req := &logSearchRequest{from: from.Add(-time.Second), to: to.Add(time.Second), size: 0}
		body := req.body(nil)
		body["aggs"] = jsonObj{"ns": jsonObj{"terms": jsonObj{"field": logFields["namespace"] + ".keyword", "size": logMaxNamespaces}}}
		body["track_total_hits"] = false
		delete(body, "highlight")
		res, err := searchStore(ctx, sess, body)
		if err != nil {
			return nil, err
		}
		for _, b := range res.Aggregations["ns"].Buckets {
			var v string
			if json.Unmarshal(b.Key, &v) == nil {
				candidates = append(candidates, v)
			}
		}
	}
	ok := make([]bool, len(candidates))
	errs := make([]error, len(candidates))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, ns := range candidates {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ok[i], errs[i] = canReadLogs(ctx, sess, ns)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var allowed []string
	for i, ns := range candidates {
		if ok[i] {
			allowed = append(allowed, ns)
		} else if len(wanted) > 0 {
			return nil, &logStoreError{code: http.StatusForbidden, msg: fmt.Sprintf("%s may not read logs (get pods/log) in namespace %q", sess.user, ns)}
		}
	}
	if len(allowed) == 0 {
		if len(candidates) == 0 {
			// No logs in the range at all: search nothing, answer empty.
			return []string{}, nil
		}
		return nil, &logStoreError{code: http.StatusForbidden, msg: fmt.Sprintf("%s may not read logs (get pods/log) in any namespace with logs in this time range", sess.user)}
	}
	return allowed, nil
}
