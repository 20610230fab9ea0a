package shipper

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/elastic/go-elasticsearch/v8/esutil"
)

// bulkItem is what the sink reads of one item of a _bulk response.
type bulkItem struct {
	Status             int
	ErrType, ErrReason string
}

// ok reports whether the item counts as created: no error and a status up
// to 201 (what go-elasticsearch's bulk indexer counted as a success).
func (it bulkItem) ok() bool { return it.ErrType == "" && it.Status <= 201 }

// bulkResponse is a decoded _bulk response: its items in request order.
type bulkResponse struct {
	HasErrors bool
	Took      int
	Items     []bulkItem
}

var respBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readBulkResponse reads a _bulk response and appends its items to items.
// The compact responses the shipper asks for (bulkFilterPath:
// {"errors":false,"items":[{"create":{"status":201}},...]}, an error's type
// and reason) are read by a small parser that allocates nothing but an
// error's strings; anything else it does not know (other fields, escapes
// in strings, null) is decoded by encoding/json into go-elasticsearch's
// BulkIndexerResponse, as its bulk indexer did. FuzzBulkResponse checks
// that both agree.
func readBulkResponse(r io.Reader, items []bulkItem) ([]bulkItem, error) {
	buf := respBufs.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 1<<20 {
			respBufs.Put(buf)
		}
	}()
	if _, err := buf.ReadFrom(r); err != nil {
		return items, fmt.Errorf("read bulk response: %w", err)
	}
	res, err := decodeBulkResponse(buf.Bytes(), items)
	return res.Items, err
}

// decodeBulkResponse decodes one _bulk response, appending its items to
// items.
func decodeBulkResponse(b []byte, items []bulkItem) (bulkResponse, error) {
	if res, ok := parseCompactBulk(b, items); ok {
		return res, nil
	}
	var full esutil.BulkIndexerResponse
	if err := json.Unmarshal(b, &full); err != nil {
		return bulkResponse{Items: items}, fmt.Errorf("decode bulk response: %w", err)
	}
	return fromIndexerResponse(&full, items), nil
}

// fromIndexerResponse converts go-elasticsearch's decoded response. An
// item is a map of one action to its result; of a (malformed) item with
// several, the first action in sorted order is read (the bulk indexer took
// whichever its map iteration gave last).
func fromIndexerResponse(full *esutil.BulkIndexerResponse, items []bulkItem) bulkResponse {
	for _, m := range full.Items {
		var it esutil.BulkIndexerResponseItem
		first := ""
		for op, v := range m {
			if first == "" || op < first {
				first, it = op, v
			}
		}
		items = append(items, bulkItem{Status: it.Status, ErrType: it.Error.Type, ErrReason: it.Error.Reason})
	}
	return bulkResponse{HasErrors: full.HasErrors, Took: full.Took, Items: items}
}

// respParser reads the compact _bulk response; any byte it does not
// expect sets bad.
type respParser struct {
	b   []byte
	i   int
	bad bool
}

func (p *respParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// peek returns the next non-blank byte (0 at the end).
func (p *respParser) peek() byte {
	p.ws()
	if p.i >= len(p.b) {
		return 0
	}
	return p.b[p.i]
}

func (p *respParser) expect(c byte) {
	if p.peek() != c {
		p.bad = true
		return
	}
	p.i++
}

// str reads a string of printable ASCII without escapes.
func (p *respParser) str() []byte {
	if p.peek() != '"' {
		p.bad = true
		return nil
	}
	for j := p.i + 1; j < len(p.b); j++ {
		switch c := p.b[j]; {
		case c == '"':
			s := p.b[p.i+1 : j]
			p.i = j + 1
			return s
		case c < 0x20 || c >= 0x7f || c == '\\':
			p.bad = true
			return nil
		}
	}
	p.bad = true
	return nil
}

// int reads a non-negative integer of at most 9 digits without leading
// zeros (what fits every int and is plain JSON).
func (p *respParser) int() int {
	p.ws()
	j, n := p.i, 0
	for j < len(p.b) && p.b[j] >= '0' && p.b[j] <= '9' {
		n = n*10 + int(p.b[j]-'0')
		j++
	}
	d := j - p.i
	if d == 0 || d > 9 || d > 1 && p.b[p.i] == '0' {
		p.bad = true
		return 0
	}
	if j < len(p.b) && (p.b[j] == '.' || p.b[j] == 'e' || p.b[j] == 'E') {
		p.bad = true
		return 0
	}
	p.i = j
	return n
}

func (p *respParser) boolean() bool {
	p.ws()
	switch {
	case bytes.HasPrefix(p.b[p.i:], []byte("true")):
		p.i += 4
		return true
	case bytes.HasPrefix(p.b[p.i:], []byte("false")):
		p.i += 5
		return false
	}
	p.bad = true
	return false
}

// object calls field for each key of an object until bad; keys are
// compared with seen so that a repeated key turns the parse bad.
func (p *respParser) object(field func(key []byte)) {
	p.expect('{')
	if p.bad {
		return
	}
	if p.peek() == '}' {
		p.i++
		return
	}
	for !p.bad {
		k := p.str()
		p.expect(':')
		if p.bad {
			return
		}
		field(k)
		switch p.peek() {
		case ',':
			p.i++
		case '}':
			p.i++
			return
		default:
			p.bad = true
		}
	}
}

// parseCompactBulk parses b when it holds only what the compact response
// has, appending its items to items; ok is false otherwise.
func parseCompactBulk(b []byte, items []bulkItem) (res bulkResponse, ok bool) {
	p := &respParser{b: b}
	res.Items = items
	var seenErrors, seenTook, seenItems bool
	p.object(func(k []byte) {
		switch string(k) {
		case "errors":
			p.bad = p.bad || seenErrors
			seenErrors = true
			res.HasErrors = p.boolean()
		case "took":
			p.bad = p.bad || seenTook
			seenTook = true
			res.Took = p.int()
		case "items":
			p.bad = p.bad || seenItems
			seenItems = true
			p.items(&res)
		default:
			p.bad = true
		}
	})
	if p.ws(); p.bad || p.i != len(p.b) {
		return bulkResponse{Items: items}, false
	}
	return res, true
}

// items reads the items array: each an object with one action key whose
// value holds status and error only.
func (p *respParser) items(res *bulkResponse) {
	p.expect('[')
	if p.bad {
		return
	}
	if p.peek() == ']' {
		p.i++
		return
	}
	for !p.bad {
		var seenOp bool
		var it bulkItem
		p.object(func([]byte) {
			if seenOp {
				p.bad = true
				return
			}
			seenOp = true
			p.item(&it)
		})
		if p.bad {
			return
		}
		if !seenOp {
			p.bad = true // {}: leave it to encoding/json
			return
		}
		res.Items = append(res.Items, it)
		switch p.peek() {
		case ',':
			p.i++
		case ']':
			p.i++
			return
		default:
			p.bad = true
		}
	}
}

func (p *respParser) item(it *bulkItem) {
	var seenStatus, seenError bool
	p.object(func(k []byte) {
		switch string(k) {
		case "status":
			p.bad = p.bad || seenStatus
			seenStatus = true
			it.Status = p.int()
		case "error":
			p.bad = p.bad || seenError
			seenError = true
			var seenType, seenReason, seenIndex bool
			p.object(func(k []byte) {
				var s []byte
				switch string(k) {
				case "type":
					p.bad = p.bad || seenType
					seenType = true
					s = p.str()
					it.ErrType = string(s)
				case "reason":
					p.bad = p.bad || seenReason
					seenReason = true
					s = p.str()
					it.ErrReason = string(s)
				case "index": // not a field of the indexer's item
					p.bad = p.bad || seenIndex
					seenIndex = true
					p.str()
				default:
					p.bad = true
				}
			})
		default:
			p.bad = true
		}
	})
}
