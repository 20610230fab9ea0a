package esapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/skiffhq/skiff/addons/logging/store"
)

// bulkItem is one action of a _bulk body.
type bulkItem struct {
	action string // index, create, update, delete, or "" for a bad line
	index  string
	id     string
	source []byte
	err    string // a per-item error found while decoding
	op     int    // index into the store ops, -1 if none
}

// decodeBulk splits an NDJSON _bulk body into items. A malformed action
// line becomes an item error; the line after it is taken as its source
// unless it is itself a valid action line, so one bad line never costs the
// items around it. Sources are slices of body.
func decodeBulk(body []byte, defIndex string) []bulkItem {
	return decodeBulkInto(nil, body, defIndex)
}

// decodeBulkInto is decodeBulk appending to items.
func decodeBulkInto(items []bulkItem, body []byte, defIndex string) []bulkItem {
	if items == nil {
		items = make([]bulkItem, 0, bytes.Count(body, []byte{'\n'})/2+1)
	}
	lines := lineReader{rest: body}
	var lastIndex string // reused while the action lines name the same index
	for {
		raw, ok := lines.next()
		if !ok {
			break
		}
		line := bytes.TrimSpace(raw)
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
				it.err = "Malformed action/metadata line [" + strconv.Itoa(lines.n) + "], expected START_OBJECT with one of [index, create, update, delete]"
			}
			if next, more := lines.peek(); more {
				if _, isAction := parseAction(bytes.TrimSpace(next), defIndex); !isAction {
					lines.next()
				}
			}
			items = append(items, it)
			continue
		}
		if it.action != "delete" {
			if src, more := lines.next(); !more {
				it.err = "The bulk request must be terminated by a newline [\\n]: missing source for action [" + it.action + "]"
			} else {
				it.source = bytes.TrimSpace(src)
			}
		}
		items = append(items, it)
	}
	return items
}

// lineReader yields the lines of a body ('\n'-separated; a last line
// without one counts, an empty rest does not), counting them.
type lineReader struct {
	rest []byte
	n    int // lines returned so far
}

func (l *lineReader) next() ([]byte, bool) {
	line, ok := l.peek()
	if ok {
		l.rest = l.rest[min(len(line)+1, len(l.rest)):]
		l.n++
	}
	return line, ok
}

func (l *lineReader) peek() ([]byte, bool) {
	if len(l.rest) == 0 {
		return nil, false
	}
	if i := bytes.IndexByte(l.rest, '\n'); i >= 0 {
		return l.rest[:i], true
	}
	return l.rest, true
}

// parseActionFast reads the common action line, {"create":{"_index":"x","_id":"y"}}
// with plain printable-ASCII strings, without allocating more than the id
// (and the index name when it differs from *lastIndex). fast is false for
// anything else (escapes, other metadata keys or value types, other actions,
// malformed JSON), which parseAction then decides; so the fast path never
// rejects a line and agrees with encoding/json wherever it answers
// (FuzzActionFast).
func parseActionFast(line []byte, defIndex string, lastIndex *string) (it bulkItem, ok, fast bool) {
	i := skipWS(line, 0)
	if i >= len(line) || line[i] != '{' {
		return it, false, false
	}
	act, i, good := plainString(line, skipWS(line, i+1))
	if !good {
		return it, false, false
	}
	switch string(act) { // no allocation: compared in place
	case "create":
		it.action = "create"
	case "index":
		it.action = "index"
	case "update":
		it.action = "update"
	case "delete":
		it.action = "delete"
	default:
		return it, false, false
	}
	if i = skipWS(line, i); i >= len(line) || line[i] != ':' {
		return it, false, false
	}
	if i = skipWS(line, i+1); i >= len(line) || line[i] != '{' {
		return it, false, false
	}
	it.index, it.op = defIndex, -1
	var index, id []byte
	haveIndex, haveID := false, false
	i = skipWS(line, i+1)
	if i < len(line) && line[i] == '}' {
		i++
	} else {
		for {
			var key, val []byte
			if key, i, good = plainString(line, i); !good {
				return it, false, false
			}
			if i = skipWS(line, i); i >= len(line) || line[i] != ':' {
				return it, false, false
			}
			if val, i, good = plainString(line, skipWS(line, i+1)); !good {
				return it, false, false
			}
			switch string(key) {
			case "_index":
				index, haveIndex = val, true
			case "_id":
				id, haveID = val, true
			default:
				return it, false, false
			}
			if i = skipWS(line, i); i >= len(line) {
				return it, false, false
			}
			if line[i] == '}' {
				i++
				break
			}
			if line[i] != ',' {
				return it, false, false
			}
			i = skipWS(line, i+1)
		}
	}
	if i = skipWS(line, i); i >= len(line) || line[i] != '}' {
		return it, false, false
	}
	if skipWS(line, i+1) != len(line) {
		return it, false, false
	}
	if haveIndex {
		if string(index) != *lastIndex {
			*lastIndex = string(index)
		}
		it.index = *lastIndex
	}
	if haveID {
		it.id = string(id)
	}
	return it, true, true
}

// skipWS returns the index of the first byte at or after i that is not JSON
// whitespace.
func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainString reads a JSON string at b[i] made of printable ASCII without
// escapes and returns its contents and the index after its closing quote;
// ok is false for anything else.
func plainString(b []byte, i int) (s []byte, next int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, i, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[i+1 : j], j + 1, true
		case c < 0x20 || c >= 0x7f || c == '\\':
			return nil, i, false
		}
	}
	return nil, i, false
}

// parseAction reads {"<action>":{"_index":..,"_id":..,...}}. Unknown
// metadata (_type, routing, pipeline, ...) is accepted and ignored.
func parseAction(line []byte, defIndex string) (bulkItem, bool) {
	it := bulkItem{index: defIndex, op: -1}
	if len(line) == 0 || line[0] != '{' {
		return it, false
	}
	var bad bool
	err := store.FlatFields(line, func(path [][]byte, v []byte, isString bool) {
		if len(path) == 1 {
			// {"create":{}} has no fields; a scalar action value is bad.
			bad = true
			return
		}
		if it.action == "" {
			it.action = string(path[0])
		} else if it.action != string(path[0]) {
			bad = true
		}
		if len(path) != 2 {
			return
		}
		switch string(path[1]) {
		case "_index":
			it.index = string(v)
		case "_id":
			it.id = string(v)
		}
	})
	if err != nil || bad {
		return it, false
	}
	if it.action == "" {
		// {"create":{}}: find the key.
		var m map[string]json.RawMessage
		if json.Unmarshal(line, &m) != nil || len(m) != 1 {
			return it, false
		}
		for k := range m {
			it.action = k
		}
	}
	switch it.action {
	case "index", "create", "update", "delete":
		return it, true
	}
	it.err = "Unknown key for a START_OBJECT in [" + it.action + "]."
	return it, false
}

// bulkState is what one _bulk request works in: its body, items, store
// operations and results, and its response. Handlers take one from
// bulkStates and give it back once the response is written, so requests
// reuse the memory instead of touching fresh pages for each.
type bulkState struct {
	body  []byte
	items []bulkItem
	ops   []store.Op
	res   []store.OpResult
	out   []byte
}

var bulkStates = sync.Pool{New: func() any { return new(bulkState) }}

// What a pooled bulkState keeps: larger buffers (a rare large request)
// are dropped when it is given back.
const (
	maxPooledBody  = 4 << 20
	maxPooledItems = 16 << 10
)

// release forgets the request (no slice of its body or strings of its
// results stay reachable from the pool) and gives the state back.
func (st *bulkState) release() {
	if cap(st.body) > maxPooledBody {
		st.body = nil
	}
	if cap(st.out) > maxPooledBody {
		st.out = nil
	}
	// Whole capacities: a request that failed half way may have filled
	// more than the lengths say.
	clear(st.items[:cap(st.items)])
	clear(st.ops[:cap(st.ops)])
	clear(st.res[:cap(st.res)])
	if cap(st.items) > maxPooledItems {
		st.items = nil
	}
	if cap(st.ops) > maxPooledItems {
		st.ops = nil
	}
	if cap(st.res) > maxPooledItems {
		st.res = nil
	}
	st.body, st.items, st.ops, st.res, st.out = st.body[:0], st.items[:0], st.ops[:0], st.res[:0], st.out[:0]
	bulkStates.Put(st)
}

func (h *Handler) bulk(w http.ResponseWriter, r *http.Request, defIndex string) error {
	start := time.Now()
	st := bulkStates.Get().(*bulkState)
	// After the response is written: nothing of the request (items,
	// ops, results, the store's copies) refers to the body after that.
	defer st.release()
	var err error
	if st.body, err = h.readBodyInto(r, st.body); err != nil {
		return err
	}
	items := decodeBulkInto(st.items[:0], st.body, defIndex)
	st.items = items
	ops := st.ops[:0]
	for i := range items {
		it := &items[i]
		if it.err != "" {
			continue
		}
		switch it.action {
		case "index", "create":
			if it.index == "" {
				it.err = "index is missing"
				continue
			}
			it.op = len(ops)
			ops = append(ops, store.Op{Index: it.index, ID: it.id, Create: it.action == "create", Source: it.source})
		default:
			it.err = "the embedded log store keeps documents immutable: [" + it.action + "] is not supported"
		}
	}
	st.ops = ops
	res, err := h.Store.BulkAppend(r.Context(), st.res[:0], ops)
	if err != nil {
		return err
	}
	st.res = res
	fp, ok := parseFilterPath(r.URL.Query().Get("filter_path"))
	if !ok {
		fp = nil // not implemented: answer unfiltered, a superset
	}
	st.out = appendBulkResponse(st.out[:0], items, res, time.Since(start).Milliseconds(), fp)
	return writeRaw(w, http.StatusOK, st.out)
}

// Fields of a _bulk response item, in the order they are written.
const (
	fIndex = iota
	fID
	fVersion
	fResult
	fShards
	fSeqNo
	fPrimaryTerm
	fStatus
	fError
	nItemFields
)

var itemFieldNames = [nItemFields]string{"_index", "_id", "_version", "result", "_shards", "_seq_no", "_primary_term", "status", "error"}

// actionSel is what a filterPath keeps of the items of one action: sel
// per field, and for the two objects sel per sub-field.
type actionSel struct {
	sel    [nItemFields]int
	shards [3]int // total, successful, failed
	err    [3]int // type, reason, index
	any    bool
}

func newActionSel(fp filterPath, action string) *actionSel {
	a := &actionSel{}
	for f := range nItemFields {
		a.sel[f] = scalarSel(fp.sel("items", action, itemFieldNames[f]), f != fShards && f != fError)
		a.any = a.any || a.sel[f] != selNone
	}
	for i, k := range []string{"total", "successful", "failed"} {
		a.shards[i] = scalarSel(fp.sel("items", action, "_shards", k), true)
	}
	for i, k := range []string{"type", "reason", "index"} {
		a.err[i] = scalarSel(fp.sel("items", action, "error", k), true)
	}
	return a
}

// scalarSel is s for a field that is a scalar when scalar: a pattern
// reaching below it (selSome) selects nothing of it.
func scalarSel(s int, scalar bool) int {
	if scalar && s == selSome {
		return selNone
	}
	return s
}

// jw appends the fields of JSON objects; field counts per object are the
// caller's, so an object left empty can be cut (drop).
type jw struct{ b []byte }

// field starts the field key of an object that has *n fields so far and
// returns the mark drop needs.
func (w *jw) field(n *int, key string) (mark, before int) {
	mark, before = len(w.b), *n
	if *n > 0 {
		w.b = append(w.b, ',')
	}
	*n++
	w.b = append(w.b, '"')
	w.b = append(w.b, key...)
	w.b = append(w.b, '"', ':')
	return mark, before
}

// drop removes the field started at mark.
func (w *jw) drop(n *int, mark, before int) { w.b, *n = w.b[:mark], before }

// renderBulk renders the _bulk response, keeping what fp selects.
func renderBulk(items []bulkItem, res []store.OpResult, took int64, fp filterPath) []byte {
	return appendBulkResponse(nil, items, res, took, fp)
}

// appendBulkResponse is renderBulk appending to dst.
func appendBulkResponse(dst []byte, items []bulkItem, res []store.OpResult, took int64, fp filterPath) []byte {
	anyErr := false
	for i := range items {
		if it := &items[i]; it.op < 0 || res[it.op].Status != 201 && res[it.op].Status != 200 {
			anyErr = true
			break
		}
	}
	size := 64 + len(items)*200
	if fp != nil {
		size = 64 + len(items)*32
	}
	w := &jw{b: slices.Grow(dst, size)}
	w.b = append(w.b, '{')
	top := 0
	if fp.sel("errors") == selAll {
		w.field(&top, "errors")
		w.b = strconv.AppendBool(w.b, anyErr)
	}
	if fp.sel("took") == selAll {
		w.field(&top, "took")
		w.b = strconv.AppendInt(w.b, took, 10)
	}
	if s := fp.sel("items"); s != selNone {
		mark, before := w.field(&top, "items")
		w.b = append(w.b, '[')
		sels := map[string]*actionSel{}
		n := 0
		for i := range items {
			it := &items[i]
			a := sels[it.action]
			if a == nil {
				a = newActionSel(fp, it.action)
				sels[it.action] = a
			}
			if !a.any {
				continue
			}
			var r store.OpResult
			if it.op >= 0 {
				r = res[it.op]
			}
			m := len(w.b)
			if n > 0 {
				w.b = append(w.b, ',')
			}
			w.b = append(w.b, '{')
			one := 0
			am, ab := w.field(&one, it.action)
			w.b = append(w.b, '{')
			if renderItem(w, a, it, &r) == 0 {
				w.drop(&one, am, ab)
				w.b = w.b[:m]
				continue
			}
			w.b = append(w.b, '}', '}')
			n++
		}
		if n == 0 && s == selSome {
			w.drop(&top, mark, before)
		} else {
			w.b = append(w.b, ']')
		}
	}
	return append(w.b, '}')
}

// renderItem appends the fields a selects of one item's object and returns
// how many it wrote.
func renderItem(w *jw, a *actionSel, it *bulkItem, r *store.OpResult) int {
	n := 0
	if a.sel[fIndex] != selNone {
		w.field(&n, "_index")
		w.b = appendJSONString(w.b, it.index)
	}
	id := r.ID
	if it.op < 0 {
		id = it.id
	}
	if id != "" && a.sel[fID] != selNone {
		w.field(&n, "_id")
		w.b = appendJSONString(w.b, id)
	}
	status, typ, reason := r.Status, "", ""
	switch {
	case it.op < 0:
		status, typ, reason = 400, "illegal_argument_exception", it.err
	case status == 201 || status == 200:
		if a.sel[fVersion] != selNone {
			w.field(&n, "_version")
			w.b = append(w.b, '1')
		}
		if a.sel[fResult] != selNone {
			w.field(&n, "result")
			if status == 200 {
				w.b = append(w.b, `"noop"`...)
			} else {
				w.b = append(w.b, `"created"`...)
			}
		}
		if a.sel[fShards] != selNone {
			mark, before := w.field(&n, "_shards")
			w.b = append(w.b, '{')
			k := 0
			for i, name := range [3]string{"total", "successful", "failed"} {
				if a.sel[fShards] == selAll || a.shards[i] != selNone {
					w.field(&k, name)
					w.b = append(w.b, "110"[i])
				}
			}
			if k == 0 {
				w.drop(&n, mark, before)
			} else {
				w.b = append(w.b, '}')
			}
		}
		if a.sel[fSeqNo] != selNone {
			w.field(&n, "_seq_no")
			w.b = strconv.AppendInt(w.b, r.Seq, 10)
		}
		if a.sel[fPrimaryTerm] != selNone {
			w.field(&n, "_primary_term")
			w.b = append(w.b, '1')
		}
	case status == 409:
		typ, reason = "version_conflict_engine_exception", "["+r.ID+"]: version conflict, document already exists (current version [1])"
	default:
		status, typ, reason = 400, "document_parsing_exception", "failed to parse"
		if r.Err != nil {
			reason = "failed to parse: " + r.Err.Error()
			if isIndexNameErr(r.Err) {
				typ = "invalid_index_name_exception"
			}
		}
	}
	if a.sel[fStatus] != selNone {
		w.field(&n, "status")
		w.b = strconv.AppendInt(w.b, int64(status), 10)
	}
	if typ != "" && a.sel[fError] != selNone {
		mark, before := w.field(&n, "error")
		w.b = append(w.b, '{')
		k := 0
		if a.sel[fError] == selAll || a.err[0] != selNone {
			w.field(&k, "type")
			w.b = appendJSONString(w.b, typ)
		}
		if a.sel[fError] == selAll || a.err[1] != selNone {
			w.field(&k, "reason")
			w.b = appendJSONString(w.b, reason)
		}
		if a.sel[fError] == selAll || a.err[2] != selNone {
			w.field(&k, "index")
			w.b = appendJSONString(w.b, it.index)
		}
		if k == 0 {
			w.drop(&n, mark, before)
		} else {
			w.b = append(w.b, '}')
		}
	}
	return n
}

func isIndexNameErr(err error) bool {
	return err != nil && bytes.Contains([]byte(err.Error()), []byte("invalid index name"))
}

// appendJSONString appends s as a JSON string.
func appendJSONString(out []byte, s string) []byte {
	simple := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || c >= 0x80 || c == '<' || c == '>' || c == '&' {
			simple = false
			break
		}
	}
	if simple {
		out = append(out, '"')
		out = append(out, s...)
		return append(out, '"')
	}
	b, _ := json.Marshal(s)
	return append(out, b...)
}
