package esapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
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
// items around it.
func decodeBulk(body []byte, defIndex string) []bulkItem {
	lines := splitLines(body)
	items := make([]bulkItem, 0, len(lines)/2+1)
	var lastIndex string // reused while the action lines name the same index
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

func splitLines(b []byte) [][]byte {
	n := bytes.Count(b, []byte{'\n'}) + 1
	out := make([][]byte, 0, n)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			out = append(out, b)
			break
		}
		out = append(out, b[:i])
		b = b[i+1:]
	}
	return out
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

func (h *Handler) bulk(w http.ResponseWriter, r *http.Request, defIndex string) error {
	start := time.Now()
	body, err := h.readBody(r)
	if err != nil {
		return err
	}
	items := decodeBulk(body, defIndex)
	ops := make([]store.Op, 0, len(items))
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
	res, err := h.Store.Bulk(r.Context(), ops)
	if err != nil {
		return err
	}
	out := make([]byte, 0, 64+len(items)*200)
	out = append(out, `{"errors":`...)
	errPos := len(out)
	out = append(out, `false,"took":`...)
	took := time.Since(start).Milliseconds()
	out = strconv.AppendInt(out, took, 10)
	out = append(out, `,"items":[`...)
	anyErr := false
	for i := range items {
		it := &items[i]
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"`...)
		out = append(out, it.action...)
		out = append(out, `":{"_index":`...)
		out = appendJSONString(out, it.index)
		if it.op < 0 {
			anyErr = true
			if it.id != "" {
				out = append(out, `,"_id":`...)
				out = appendJSONString(out, it.id)
			}
			out = appendItemError(out, 400, "illegal_argument_exception", it.err, it.index)
			out = append(out, "}}"...)
			continue
		}
		r := res[it.op]
		out = append(out, `,"_id":`...)
		out = appendJSONString(out, r.ID)
		switch r.Status {
		case 201, 200:
			result := "created"
			if r.Status == 200 {
				result = "noop"
			}
			out = append(out, `,"_version":1,"result":"`...)
			out = append(out, result...)
			out = append(out, `","_shards":{"total":1,"successful":1,"failed":0},"_seq_no":`...)
			out = strconv.AppendInt(out, r.Seq, 10)
			out = append(out, `,"_primary_term":1,"status":`...)
			out = strconv.AppendInt(out, int64(r.Status), 10)
		case 409:
			anyErr = true
			out = appendItemError(out, 409, "version_conflict_engine_exception", "["+r.ID+"]: version conflict, document already exists (current version [1])", it.index)
		default:
			anyErr = true
			msg := "failed to parse"
			if r.Err != nil {
				msg = "failed to parse: " + r.Err.Error()
			}
			typ := "document_parsing_exception"
			if r.Err != nil && isIndexNameErr(r.Err) {
				typ = "invalid_index_name_exception"
			}
			out = appendItemError(out, 400, typ, msg, it.index)
		}
		out = append(out, "}}"...)
	}
	out = append(out, "]}"...)
	if anyErr {
		out = append(out[:errPos], append([]byte("true"), out[errPos+5:]...)...)
	}
	return writeRaw(w, http.StatusOK, out)
}

func isIndexNameErr(err error) bool {
	return err != nil && bytes.Contains([]byte(err.Error()), []byte("invalid index name"))
}

func appendItemError(out []byte, status int, typ, reason, index string) []byte {
	out = append(out, `,"status":`...)
	out = strconv.AppendInt(out, int64(status), 10)
	out = append(out, `,"error":{"type":"`...)
	out = append(out, typ...)
	out = append(out, `","reason":`...)
	out = appendJSONString(out, reason)
	out = append(out, `,"index":`...)
	out = appendJSONString(out, index)
	return append(out, '}')
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
