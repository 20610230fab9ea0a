package esapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/skiffhq/skiff/addons/logging/store"
)

// maxResultWindow is Elasticsearch's index.max_result_window.
const maxResultWindow = 10000

func badRequest(format string, a ...any) error {
	return esError(http.StatusBadRequest, "parsing_exception", fmt.Sprintf(format, a...))
}

// searchBody is the part of a _search body the store understands.
type searchBody struct {
	Query          json.RawMessage            `json:"query"`
	Size           *int                       `json:"size"`
	From           *int                       `json:"from"`
	Sort           json.RawMessage            `json:"sort"`
	SearchAfter    []json.RawMessage          `json:"search_after"`
	TrackTotalHits json.RawMessage            `json:"track_total_hits"`
	Aggs           map[string]json.RawMessage `json:"aggs"`
	Aggregations   map[string]json.RawMessage `json:"aggregations"`
	Highlight      json.RawMessage            `json:"highlight"`
	Source         json.RawMessage            `json:"_source"`

	// raw is the body as it came, for the other servers of a cluster.
	raw []byte
}

// indicesFor resolves the path's index expression, answering 404 for a
// concrete name that does not exist (as Elasticsearch does unless
// ignore_unavailable is set).
func (h *Handler) indicesFor(r *http.Request, expr string) ([]string, error) {
	if expr == "" || expr == "_all" || expr == "*" {
		return nil, nil
	}
	if r.URL.Query().Get("ignore_unavailable") != "true" {
		for _, n := range strings.Split(expr, ",") {
			if n == "" || strings.ContainsAny(n, "*?") || strings.HasPrefix(n, "-") {
				continue
			}
			if !h.Store.Exists(n) {
				return nil, fmt.Errorf("%w: no such index [%s]", store.ErrIndexNotFound, n)
			}
		}
	}
	return []string{expr}, nil
}

func (h *Handler) parseSearch(r *http.Request, index string) (store.SearchRequest, *searchBody, error) {
	var req store.SearchRequest
	var body searchBody
	raw, err := h.readBody(r)
	if err != nil {
		return req, nil, err
	}
	body.raw = raw
	if len(bytes.TrimSpace(raw)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&body); err != nil {
			return req, nil, badRequest("request body: %v", err)
		}
	}
	if h.federated(r) {
		// A concrete index missing here may be on another server; the
		// caller answers 404 when it is on none.
		if index != "" {
			req.Indices = []string{index}
		}
	} else if req.Indices, err = h.indicesFor(r, index); err != nil {
		return req, nil, err
	}
	now := time.Now()
	uq := r.URL.Query()
	if q := uq.Get("q"); q != "" {
		df := uq.Get("df")
		req.Query, err = parseQueryString(q, df, strings.EqualFold(uq.Get("default_operator"), "and"))
		if err != nil {
			return req, nil, esError(http.StatusBadRequest, "query_shard_exception", "Failed to parse query ["+q+"]: "+err.Error())
		}
	} else if len(body.Query) > 0 {
		req.Query, err = parseQuery(body.Query, 0)
		if err != nil {
			return req, nil, err
		}
	}
	req.Query = resolveDates(req.Query, now)
	req.Size = 10
	if body.Size != nil {
		req.Size = *body.Size
	}
	if v := uq.Get("size"); v != "" {
		if req.Size, err = strconv.Atoi(v); err != nil {
			return req, nil, badRequest("bad size")
		}
	}
	if body.From != nil {
		req.From = *body.From
	}
	if v := uq.Get("from"); v != "" {
		if req.From, err = strconv.Atoi(v); err != nil {
			return req, nil, badRequest("bad from")
		}
	}
	if req.Size < 0 || req.From < 0 {
		return req, nil, badRequest("[from] and [size] must not be negative")
	}
	if req.From+req.Size > maxResultWindow {
		return req, nil, esError(http.StatusBadRequest, "illegal_argument_exception", fmt.Sprintf("Result window is too large, from + size must be less than or equal to: [%d] but was [%d]. Use search_after to page through more results.", maxResultWindow, req.From+req.Size))
	}
	if len(body.Sort) > 0 {
		if req.Sort, err = parseSort(body.Sort); err != nil {
			return req, nil, err
		}
	}
	if v := uq.Get("sort"); v != "" {
		req.Sort = nil
		for _, s := range strings.Split(v, ",") {
			f, o, _ := strings.Cut(s, ":")
			sf, err := sortField(f, o)
			if err != nil {
				return req, nil, err
			}
			req.Sort = append(req.Sort, sf)
		}
	}
	if len(body.SearchAfter) > 0 {
		if len(req.Sort) == 0 {
			return req, nil, badRequest("search_after needs a sort")
		}
		for _, v := range body.SearchAfter {
			s := strings.Trim(string(v), `"`)
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				f, ferr := strconv.ParseFloat(s, 64)
				if ferr != nil {
					if t, ok := store.ParseTimeString(s); ok {
						n = t / 1e6
					} else {
						return req, nil, badRequest("search_after value %s is not a number", v)
					}
				} else {
					n = int64(f)
				}
			}
			req.SearchAfter = append(req.SearchAfter, n)
		}
	}
	tth := string(body.TrackTotalHits)
	if v := uq.Get("track_total_hits"); v != "" {
		tth = v
	}
	switch tth {
	case "", "null":
	case "true":
		req.TrackTotalHits = -1
	case "false":
		req.TrackTotalHits = 1
	default:
		n, err := strconv.Atoi(tth)
		if err != nil {
			return req, nil, badRequest("bad track_total_hits")
		}
		if n <= 0 {
			n = 1
		}
		req.TrackTotalHits = n
	}
	aggs := body.Aggs
	if aggs == nil {
		aggs = body.Aggregations
	}
	if req.Aggs, err = parseAggs(aggs, 0); err != nil {
		return req, nil, err
	}
	return req, &body, nil
}

func parseSort(raw json.RawMessage) ([]store.SortField, error) {
	var items []json.RawMessage
	if raw[0] == '[' {
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, badRequest("sort: %v", err)
		}
	} else {
		items = []json.RawMessage{raw}
	}
	var out []store.SortField
	for _, it := range items {
		var name string
		if json.Unmarshal(it, &name) == nil {
			sf, err := sortField(name, "")
			if err != nil {
				return nil, err
			}
			out = append(out, sf)
			continue
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(it, &m); err != nil || len(m) != 1 {
			return nil, badRequest("bad sort entry %s", it)
		}
		for k, v := range m {
			var order string
			if json.Unmarshal(v, &order) != nil {
				var o struct {
					Order string `json:"order"`
				}
				if err := json.Unmarshal(v, &o); err != nil {
					return nil, badRequest("bad sort entry %s", it)
				}
				order = o.Order
			}
			sf, err := sortField(k, order)
			if err != nil {
				return nil, err
			}
			out = append(out, sf)
		}
	}
	return out, nil
}

func sortField(name, order string) (store.SortField, error) {
	switch name {
	case "_shard_doc":
		name = "_doc"
	case "timestamp", "@timestamp":
		name = "@timestamp"
	case "_doc", "_score":
	default:
		return store.SortField{}, badRequest("sorting by [%s] is not supported by the embedded log store (only @timestamp, _doc, _score)", name)
	}
	desc := name == "_score"
	switch strings.ToLower(order) {
	case "desc":
		desc = true
	case "asc":
		desc = false
	case "":
	default:
		return store.SortField{}, badRequest("bad sort order [%s]", order)
	}
	return store.SortField{Field: name, Desc: desc}, nil
}

func (h *Handler) search(w http.ResponseWriter, r *http.Request, index string) error {
	start := time.Now()
	req, body, err := h.parseSearch(r, index)
	if err != nil {
		return err
	}
	shards := shardsLocal
	var res *store.SearchResult
	if h.federated(r) {
		res, shards, err = h.searchCluster(r, index, req, body.raw)
	} else {
		res, err = h.Store.Search(r.Context(), req)
	}
	if err != nil {
		return err
	}
	scored := len(req.Sort) == 0 || req.Sort[0].Field == "_score"
	hl := highlightTerms(body, req.Query)
	noSource := body != nil && string(body.Source) == "false"
	var out bytes.Buffer
	out.Grow(512 + len(res.Hits)*512)
	fmt.Fprintf(&out, `{"took":%d,"timed_out":false,"_shards":`, time.Since(start).Milliseconds())
	out.Write(shards.json())
	out.WriteString(`,"hits":{"total":`)
	rel := "eq"
	if !res.TotalExact {
		rel = "gte"
	}
	if r.URL.Query().Get("rest_total_hits_as_int") == "true" {
		fmt.Fprintf(&out, "%d", res.Total)
	} else {
		fmt.Fprintf(&out, `{"value":%d,"relation":"%s"}`, res.Total, rel)
	}
	if scored && len(res.Hits) > 0 {
		out.WriteString(`,"max_score":1.0,"hits":[`)
	} else {
		out.WriteString(`,"max_score":null,"hits":[`)
	}
	for i, hit := range res.Hits {
		if i > 0 {
			out.WriteByte(',')
		}
		out.WriteString(`{"_index":`)
		out.Write(appendJSONString(nil, hit.Index))
		out.WriteString(`,"_id":`)
		out.Write(appendJSONString(nil, hit.ID))
		if scored {
			out.WriteString(`,"_score":1.0`)
		} else {
			out.WriteString(`,"_score":null`)
		}
		if !noSource {
			out.WriteString(`,"_source":`)
			out.Write(hit.Source)
		}
		if len(hit.Sort) > 0 {
			out.WriteString(`,"sort":[`)
			for j, v := range hit.Sort {
				if j > 0 {
					out.WriteByte(',')
				}
				out.WriteString(strconv.FormatInt(v, 10))
			}
			out.WriteByte(']')
		}
		if hl != nil {
			if frag := hl.apply(hit.Source); frag != nil {
				out.WriteString(`,"highlight":`)
				out.Write(frag)
			}
		}
		out.WriteByte('}')
	}
	out.WriteString("]}")
	if len(res.Aggs) > 0 {
		out.WriteString(`,"aggregations":`)
		b, _ := json.Marshal(renderAggs(res.Aggs))
		out.Write(b)
	}
	out.WriteByte('}')
	return writeRaw(w, http.StatusOK, out.Bytes())
}

func renderAggs(aggs []store.AggResult) map[string]any {
	out := map[string]any{}
	for _, a := range aggs {
		buckets := make([]map[string]any, 0, len(a.Buckets))
		for _, b := range a.Buckets {
			m := map[string]any{"doc_count": b.Count}
			if a.Date {
				m["key"] = b.Key
				m["key_as_string"] = keyAsString(b.Key, a.Location)
			} else if b.KeyRaw {
				m["key"] = json.RawMessage(b.KeyString)
			} else {
				m["key"] = b.KeyString
			}
			for k, v := range renderAggs(b.Aggs) {
				m[k] = v
			}
			buckets = append(buckets, m)
		}
		if a.Date {
			out[a.Name] = map[string]any{"buckets": buckets}
		} else {
			out[a.Name] = map[string]any{"doc_count_error_upper_bound": 0, "sum_other_doc_count": a.SumOther, "buckets": buckets}
		}
	}
	return out
}

func (h *Handler) count(w http.ResponseWriter, r *http.Request, index string) error {
	req, body, err := h.parseSearch(r, index)
	if err != nil {
		return err
	}
	shards := shardsLocal
	var n int64
	if h.federated(r) {
		n, shards, err = h.countCluster(r, index, req, body.raw)
	} else {
		n, err = h.Store.Count(r.Context(), req.Indices, req.Query)
	}
	if err != nil {
		return err
	}
	out := fmt.Appendf(nil, `{"count":%d,"_shards":`, n)
	out = append(append(out, shards.json()...), '}')
	return writeRaw(w, http.StatusOK, out)
}

// parseQuery translates the query DSL.
func parseQuery(raw json.RawMessage, depth int) (store.Query, error) {
	if depth > maxQueryDepth {
		return nil, badRequest("query nested too deeply")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, badRequest("query: %v", err)
	}
	if len(m) != 1 {
		return nil, badRequest("a query must have exactly one key, got %d", len(m))
	}
	for kind, body := range m {
		switch kind {
		case "match_all":
			return store.MatchAll{}, nil
		case "match_none":
			return store.MatchNone{}, nil
		case "match", "match_phrase":
			f, v, opts, err := fieldValue(body, "query")
			if err != nil {
				return nil, err
			}
			if kind == "match_phrase" {
				return store.Text{Field: f, Text: v, Phrase: true}, nil
			}
			op, _ := opts["operator"].(string)
			return store.Text{Field: f, Text: v, AnyToken: !strings.EqualFold(op, "and")}, nil
		case "term":
			f, v, _, err := fieldValue(body, "value")
			if err != nil {
				return nil, err
			}
			return store.Term{Field: f, Value: v}, nil
		case "terms":
			var tm map[string]json.RawMessage
			if err := json.Unmarshal(body, &tm); err != nil {
				return nil, badRequest("terms: %v", err)
			}
			var b store.Bool
			for f, vs := range tm {
				if f == "boost" {
					continue
				}
				var arr []json.RawMessage
				if err := json.Unmarshal(vs, &arr); err != nil {
					return nil, badRequest("terms [%s] must be an array", f)
				}
				for _, v := range arr {
					b.Should = append(b.Should, store.Term{Field: f, Value: scalar(v)})
				}
			}
			if len(b.Should) == 0 {
				return store.MatchNone{}, nil
			}
			return b, nil
		case "ids":
			var ids struct {
				Values []string `json:"values"`
			}
			if err := json.Unmarshal(body, &ids); err != nil {
				return nil, badRequest("ids: %v", err)
			}
			return store.IDs{Values: ids.Values}, nil
		case "wildcard", "prefix":
			f, v, _, err := fieldValue(body, "value")
			if err != nil {
				return nil, err
			}
			if kind == "prefix" {
				v += "*"
			}
			return store.Wildcard{Field: f, Pattern: v}, nil
		case "exists":
			var e struct {
				Field string `json:"field"`
			}
			if err := json.Unmarshal(body, &e); err != nil || e.Field == "" {
				return nil, badRequest("exists needs a field")
			}
			return store.Exists{Field: e.Field}, nil
		case "range":
			var rm map[string]map[string]json.RawMessage
			if err := json.Unmarshal(body, &rm); err != nil || len(rm) != 1 {
				return nil, badRequest("range: expected one field")
			}
			for f, opts := range rm {
				q := store.Range{Field: f}
				for k, v := range opts {
					s := scalar(v)
					switch k {
					case "gt":
						q.GT = s
					case "gte", "from":
						q.GTE = s
					case "lt":
						q.LT = s
					case "lte", "to":
						q.LTE = s
					}
				}
				return q, nil
			}
		case "bool":
			var bb map[string]json.RawMessage
			if err := json.Unmarshal(body, &bb); err != nil {
				return nil, badRequest("bool: %v", err)
			}
			var b store.Bool
			for k, v := range bb {
				var dst *[]store.Query
				switch k {
				case "must":
					dst = &b.Must
				case "filter":
					dst = &b.Filter
				case "should":
					dst = &b.Should
				case "must_not":
					dst = &b.MustNot
				case "minimum_should_match":
					n, err := strconv.Atoi(strings.Trim(string(v), `"`))
					if err != nil {
						return nil, badRequest("minimum_should_match must be a number")
					}
					b.MinimumShouldMatch = n
					continue
				default:
					continue
				}
				var list []json.RawMessage
				if len(v) > 0 && v[0] == '[' {
					if err := json.Unmarshal(v, &list); err != nil {
						return nil, badRequest("bool.%s: %v", k, err)
					}
				} else {
					list = []json.RawMessage{v}
				}
				for _, sub := range list {
					q, err := parseQuery(sub, depth+1)
					if err != nil {
						return nil, err
					}
					*dst = append(*dst, q)
				}
			}
			return b, nil
		case "query_string", "simple_query_string":
			var qs struct {
				Query           string   `json:"query"`
				DefaultField    string   `json:"default_field"`
				Fields          []string `json:"fields"`
				DefaultOperator string   `json:"default_operator"`
			}
			if err := json.Unmarshal(body, &qs); err != nil {
				return nil, badRequest("query_string: %v", err)
			}
			df := qs.DefaultField
			if df == "" && len(qs.Fields) == 1 {
				df = qs.Fields[0]
			}
			q, err := parseQueryString(qs.Query, df, strings.EqualFold(qs.DefaultOperator, "and"))
			if err != nil {
				return nil, esError(http.StatusBadRequest, "query_shard_exception", "Failed to parse query ["+qs.Query+"]: "+err.Error())
			}
			return q, nil
		default:
			return nil, badRequest("unknown query [%s]", kind)
		}
	}
	return nil, badRequest("empty query")
}

// fieldValue reads {"field": "v"} or {"field": {"<key>": "v", ...}}.
func fieldValue(body json.RawMessage, key string) (string, string, map[string]any, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return "", "", nil, badRequest("%v", err)
	}
	for f, v := range m {
		if f == "boost" || f == "_name" {
			continue
		}
		if len(v) > 0 && v[0] == '{' {
			var opts map[string]any
			dec := json.NewDecoder(bytes.NewReader(v))
			dec.UseNumber()
			if err := dec.Decode(&opts); err != nil {
				return "", "", nil, badRequest("%v", err)
			}
			raw, _ := json.Marshal(opts[key])
			if opts[key] == nil {
				return "", "", nil, badRequest("[%s] is missing for field [%s]", key, f)
			}
			return f, scalar(raw), opts, nil
		}
		return f, scalar(v), nil, nil
	}
	return "", "", nil, badRequest("no field given")
}

// scalar renders a JSON scalar as the string the store compares.
func scalar(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	return strings.TrimSpace(string(v))
}

var dateMath = regexp.MustCompile(`^now(([+-]\d+[smhdwMyH])*)(/[smhdwMyH])?$`)

// resolveDates turns Elasticsearch date math (now-15m, now/d) and epoch
// milliseconds in @timestamp ranges into RFC 3339 bounds.
func resolveDates(q store.Query, now time.Time) store.Query {
	switch q := q.(type) {
	case store.Range:
		fix := func(s string, roundUp bool) string {
			if s == "" {
				return s
			}
			if t, ok := evalDateMath(s, now, roundUp); ok {
				return t.UTC().Format(time.RFC3339Nano)
			}
			if strings.HasSuffix(q.Field, "timestamp") {
				if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
					return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
				}
			}
			return s
		}
		q.GT, q.GTE = fix(q.GT, true), fix(q.GTE, false)
		q.LT, q.LTE = fix(q.LT, false), fix(q.LTE, true)
		return q
	case store.Bool:
		for _, l := range []*[]store.Query{&q.Must, &q.Filter, &q.Should, &q.MustNot} {
			out := make([]store.Query, len(*l))
			for i, s := range *l {
				out[i] = resolveDates(s, now)
			}
			*l = out
		}
		return q
	}
	return q
}

func evalDateMath(s string, now time.Time, roundUp bool) (time.Time, bool) {
	base := now
	expr := s
	if i := strings.Index(s, "||"); i >= 0 {
		t, ok := store.ParseTimeString(s[:i])
		if !ok {
			return time.Time{}, false
		}
		base, expr = time.Unix(0, t), "now"+s[i+2:]
	}
	m := dateMath.FindStringSubmatch(expr)
	if m == nil {
		return time.Time{}, false
	}
	t := base.UTC()
	ops := regexp.MustCompile(`([+-])(\d+)([smhdwMyH])`).FindAllStringSubmatch(m[1], -1)
	for _, op := range ops {
		n, _ := strconv.Atoi(op[2])
		if op[1] == "-" {
			n = -n
		}
		switch op[3] {
		case "s":
			t = t.Add(time.Duration(n) * time.Second)
		case "m":
			t = t.Add(time.Duration(n) * time.Minute)
		case "h", "H":
			t = t.Add(time.Duration(n) * time.Hour)
		case "d":
			t = t.AddDate(0, 0, n)
		case "w":
			t = t.AddDate(0, 0, 7*n)
		case "M":
			t = t.AddDate(0, n, 0)
		case "y":
			t = t.AddDate(n, 0, 0)
		}
	}
	if m[3] != "" {
		var start, next time.Time
		switch m[3][1] {
		case 's':
			start = t.Truncate(time.Second)
			next = start.Add(time.Second)
		case 'm':
			start = t.Truncate(time.Minute)
			next = start.Add(time.Minute)
		case 'h', 'H':
			start = t.Truncate(time.Hour)
			next = start.Add(time.Hour)
		case 'd':
			start = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
			next = start.AddDate(0, 0, 1)
		case 'w':
			d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
			start = d.AddDate(0, 0, -((int(d.Weekday()) + 6) % 7))
			next = start.AddDate(0, 0, 7)
		case 'M':
			start = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
			next = start.AddDate(0, 1, 0)
		case 'y':
			start = time.Date(t.Year(), 1, 1, 0, 0, 0, 0, time.UTC)
			next = start.AddDate(1, 0, 0)
		}
		if roundUp {
			return next.Add(-time.Millisecond), true
		}
		return start, true
	}
	return t, true
}

var intervalRe = regexp.MustCompile(`^(\d+)(ms|s|m|h|d)$`)

// offsetRe is a time_zone given as an offset: +01:00, -0800, +5.
var offsetRe = regexp.MustCompile(`^([+-])(\d{1,2})(?::?(\d{2}))?$`)

// parseTimeZone reads a date histogram's time_zone as Elasticsearch
// takes it: an offset from UTC (+01:00, -08:00, -0800) or a zone ID
// (UTC, Europe/Berlin; the tz database is built in). Empty, Z and UTC
// are nil: UTC.
func parseTimeZone(s string) (*time.Location, error) {
	switch s {
	case "", "Z", "z", "UTC", "Etc/UTC", "GMT":
		return nil, nil
	case "Local":
		// LoadLocation's name for this process's zone, not an ID.
		return nil, fmt.Errorf("unknown time-zone ID [%s]", s)
	}
	if m := offsetRe.FindStringSubmatch(s); m != nil {
		h, _ := strconv.Atoi(m[2])
		mins := 0
		if m[3] != "" {
			mins, _ = strconv.Atoi(m[3])
		}
		if h > 18 || mins > 59 || h == 18 && mins > 0 {
			return nil, fmt.Errorf("zone offset [%s] out of range -18:00 to +18:00", s)
		}
		off := h*3600 + mins*60
		if m[1] == "-" {
			off = -off
		}
		if off == 0 {
			return nil, nil
		}
		return time.FixedZone(s, off), nil
	}
	loc, err := time.LoadLocation(s)
	if err != nil {
		return nil, fmt.Errorf("unknown time-zone ID [%s]", s)
	}
	return loc, nil
}

// keyAsString is a date bucket key's key_as_string: the instant in the
// histogram's zone, with its offset (Z for UTC), as Elasticsearch's
// default format.
func keyAsString(ms int64, loc *time.Location) string {
	if loc == nil {
		loc = time.UTC
	}
	return time.UnixMilli(ms).In(loc).Format("2006-01-02T15:04:05.000Z07:00")
}

func parseAggs(m map[string]json.RawMessage, depth int) ([]store.AggRequest, error) {
	if depth > 3 {
		return nil, badRequest("aggregations nested too deeply")
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	var out []store.AggRequest
	for _, name := range names {
		var a struct {
			DateHistogram *struct {
				Field            string `json:"field"`
				FixedInterval    string `json:"fixed_interval"`
				CalendarInterval string `json:"calendar_interval"`
				Interval         string `json:"interval"`
				TimeZone         string `json:"time_zone"`
				MinDocCount      *int64 `json:"min_doc_count"`
				ExtendedBounds   *struct {
					Min json.RawMessage `json:"min"`
					Max json.RawMessage `json:"max"`
				} `json:"extended_bounds"`
			} `json:"date_histogram"`
			Terms *struct {
				Field       string `json:"field"`
				Size        int    `json:"size"`
				MinDocCount int64  `json:"min_doc_count"`
			} `json:"terms"`
			Aggs         map[string]json.RawMessage `json:"aggs"`
			Aggregations map[string]json.RawMessage `json:"aggregations"`
		}
		if err := json.Unmarshal(m[name], &a); err != nil {
			return nil, badRequest("aggregation [%s]: %v", name, err)
		}
		req := store.AggRequest{Name: name}
		switch {
		case a.DateHistogram != nil:
			d := a.DateHistogram
			sd := &store.DateHistogram{Field: d.Field}
			var err error
			if sd.Location, err = parseTimeZone(d.TimeZone); err != nil {
				return nil, badRequest("date_histogram [%s]: %v", name, err)
			}
			if d.MinDocCount != nil {
				sd.MinDocCount = *d.MinDocCount
			}
			iv := d.FixedInterval
			if iv == "" && d.Interval != "" && intervalRe.MatchString(d.Interval) && !strings.HasPrefix(d.Interval, "1") {
				iv = d.Interval
			}
			switch {
			case iv != "":
				mm := intervalRe.FindStringSubmatch(iv)
				if mm == nil {
					return nil, badRequest("bad fixed_interval [%s]", iv)
				}
				n, _ := strconv.Atoi(mm[1])
				unit := map[string]time.Duration{"ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour}[mm[2]]
				sd.Fixed = time.Duration(n) * unit
				if sd.Fixed <= 0 {
					return nil, badRequest("bad fixed_interval [%s]", iv)
				}
			default:
				c := d.CalendarInterval
				if c == "" {
					c = d.Interval
				}
				switch c {
				case "second", "1s", "minute", "1m", "hour", "1h", "day", "1d", "week", "1w", "month", "1M", "quarter", "1q", "year", "1y":
					sd.Calendar = c
				default:
					return nil, badRequest("date_histogram [%s] needs fixed_interval or calendar_interval", name)
				}
			}
			if eb := d.ExtendedBounds; eb != nil {
				lo, ok1 := boundTime(eb.Min)
				hi, ok2 := boundTime(eb.Max)
				if ok1 && ok2 {
					sd.ExtendedBounds = &[2]int64{lo, hi}
				}
			}
			req.DateHistogram = sd
		case a.Terms != nil:
			req.Terms = &store.TermsAgg{Field: a.Terms.Field, Size: a.Terms.Size, MinDocCount: a.Terms.MinDocCount}
		default:
			return nil, badRequest("aggregation [%s]: only date_histogram and terms are supported", name)
		}
		sub := a.Aggs
		if sub == nil {
			sub = a.Aggregations
		}
		var err error
		if req.Aggs, err = parseAggs(sub, depth+1); err != nil {
			return nil, err
		}
		out = append(out, req)
	}
	return out, nil
}

func boundTime(v json.RawMessage) (int64, bool) {
	s := scalar(v)
	if t, ok := evalDateMath(s, time.Now(), false); ok {
		return t.UnixNano(), true
	}
	return store.ParseTimeString(s)
}
