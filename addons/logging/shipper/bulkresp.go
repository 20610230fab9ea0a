package shipper

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/elastic/go-elasticsearch/v8/esutil"
)

// bulkDecoder decodes _bulk responses for the bulk indexer. The compact
// responses the shipper asks for (bulkFilterPath: {"errors":false,
// "items":[{"create":{"status":201}},...]}, an error's type and reason) are
// read by a small parser that allocates little more than the items the
// indexer wants; anything else it does not know (other fields, escapes in
// strings, null) is decoded by encoding/json, as the indexer's default
// decoder does. FuzzBulkResponse checks that both agree.
type bulkDecoder struct{}

var respBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// UnmarshalFromReader implements esutil.BulkResponseJSONDecoder.
func (bulkDecoder) UnmarshalFromReader(r io.Reader, blk *esutil.BulkIndexerResponse) error {
	buf := respBufs.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 1<<20 {
			respBufs.Put(buf)
		}
	}()
	if _, err := buf.ReadFrom(r); err != nil {
		return fmt.Errorf("read bulk response: %w", err)
	}
	return decodeBulkResponse(buf.Bytes(), blk)
}

// decodeBulkResponse decodes one _bulk response into blk.
func decodeBulkResponse(b []byte, blk *esutil.BulkIndexerResponse) error {
	if res, ok := parseCompactBulk(b); ok {
		*blk = res
		return nil
	}
	if err := json.Unmarshal(b, blk); err != nil {
		return fmt.Errorf("decode bulk response: %w", err)
	}
	return nil
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
// has; ok is false otherwise.
func parseCompactBulk(b []byte) (res esutil.BulkIndexerResponse, ok bool) {
	p := &respParser{b: b}
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
		return esutil.BulkIndexerResponse{}, false
	}
	return res, true
}

// items reads the items array: each an object with one action key whose
// value holds status and error only.
func (p *respParser) items(res *esutil.BulkIndexerResponse) {
	p.expect('[')
	if p.bad {
		return
	}
	res.Items = make([]map[string]esutil.BulkIndexerResponseItem, 0, bytes.Count(p.b[p.i:], []byte(`"status"`)))
	if p.peek() == ']' {
		p.i++
		return
	}
	for !p.bad {
		var op string
		var it esutil.BulkIndexerResponseItem
		p.object(func(k []byte) {
			if op != "" {
				p.bad = true
				return
			}
			op = string(k)
			p.item(&it)
		})
		if p.bad {
			return
		}
		if op == "" {
			p.bad = true // {} decodes to an empty map: leave it to encoding/json
			return
		}
		res.Items = append(res.Items, map[string]esutil.BulkIndexerResponseItem{op: it})
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

func (p *respParser) item(it *esutil.BulkIndexerResponseItem) {
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
					it.Error.Type = string(s)
				case "reason":
					p.bad = p.bad || seenReason
					seenReason = true
					s = p.str()
					it.Error.Reason = string(s)
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
