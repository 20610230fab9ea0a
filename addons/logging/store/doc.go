package store

import (
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/skiffhq/skiff/internal/jsonscan"
)

// Value kinds in a flattened document.
const (
	kindAbsent = 0
	kindString = 1 // an unescaped JSON string
	kindRaw    = 2 // literal JSON: a number, true/false, or an array
)

// pathSep joins the segments of a field's path internally; the field's name
// in queries joins them with ".". Keeping the segments apart lets _source be
// rebuilt with the client's nesting, and lets `app` and
// `app.kubernetes.io/name` live side by side.
const pathSep = '\x1f'

// maxDepth bounds object nesting in documents.
const maxDepth = 64

// ErrBadDocument is returned for a document that is not a JSON object.
var ErrBadDocument = errors.New("bad document")

// field is one flattened value of a document.
type field struct {
	path  []byte // segments joined by pathSep
	kind  uint8
	value []byte
}

// flattener parses JSON documents into flattened fields, reusing buffers.
type flattener struct {
	fields []field
	buf    []byte // unescaped strings and paths
	path   []byte
	// offsets into buf, resolved after parsing (buf may move while growing)
	spans []span
	// objs remembers the last few object values of top-level keys with
	// their flattened fields: the shipper's kubernetes block is the same
	// bytes for every line of a container (a request mixes a few
	// containers), so a document that repeats them copies the fields
	// instead of parsing them again.
	objs    []objMemo
	noMemo  bool // parse every object (the reference the memo is tested against)
	objNext int  // the entry a new object replaces when objs is full
	objHits int  // objects copied from the memo (for tests)
}

// objMemo is one remembered object: its path, its exact bytes and its
// fields (paths and string values in arena; a raw value as its offset in
// raw, since raw values point into the source).
type objMemo struct {
	path   []byte
	raw    []byte
	arena  []byte
	fields []memoField
}

type memoField struct {
	kind       uint8
	pl, vo, vl int32 // path arena[:pl] from po; value arena[vo:vo+vl] or raw[vo:vo+vl]
	po         int32
}

const (
	maxObjMemos   = 8
	minObjMemo    = 64      // smaller objects are parsed
	maxObjMemoLen = 1 << 16 // larger objects are parsed
)

type span struct{ po, pl, vo, vl int32 }

// flatten parses src (a JSON object) into f.fields. Invalid UTF-8 in strings
// is replaced with U+FFFD; a null value is dropped. The returned fields
// point into f's buffers and src, valid until the next call.
func (f *flattener) flatten(src []byte) error {
	f.fields = f.fields[:0]
	f.buf = f.buf[:0]
	f.spans = f.spans[:0]
	f.path = f.path[:0]
	p := parser{src: src}
	p.ws()
	if p.i >= len(p.src) || p.src[p.i] != '{' {
		return fmt.Errorf("%w: not a JSON object", ErrBadDocument)
	}
	if err := f.object(&p, 0); err != nil {
		return err
	}
	p.ws()
	if p.i != len(p.src) {
		return fmt.Errorf("%w: trailing data at offset %d", ErrBadDocument, p.i)
	}
	for i, s := range f.spans {
		f.fields[i].path = f.buf[s.po : s.po+s.pl]
		if f.fields[i].kind == kindString {
			f.fields[i].value = f.buf[s.vo : s.vo+s.vl]
		}
	}
	return nil
}

func (f *flattener) object(p *parser, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: nested too deeply", ErrBadDocument)
	}
	p.i++ // '{'
	p.ws()
	if p.peek() == '}' {
		p.i++
		return nil
	}
	base := len(f.path)
	for {
		p.ws()
		if p.peek() != '"' {
			return p.errf("expected a key")
		}
		key, err := p.str(&f.buf)
		if err != nil {
			return err
		}
		f.path = f.path[:base]
		if base > 0 {
			f.path = append(f.path, pathSep)
		}
		for _, c := range key {
			if c == pathSep {
				c = '_'
			}
			f.path = append(f.path, c)
		}
		p.ws()
		if p.peek() != ':' {
			return p.errf("expected ':'")
		}
		p.i++
		p.ws()
		if err := f.value(p, depth); err != nil {
			return err
		}
		p.ws()
		switch p.peek() {
		case ',':
			p.i++
		case '}':
			p.i++
			f.path = f.path[:base]
			return nil
		default:
			return p.errf("expected ',' or '}'")
		}
	}
}

func (f *flattener) value(p *parser, depth int) error {
	switch c := p.peek(); {
	case c == '{':
		if depth != 0 || f.noMemo {
			return f.object(p, depth+1)
		}
		return f.memoObject(p, depth)
	case c == '"':
		po := len(f.buf)
		f.buf = append(f.buf, f.path...)
		vo := len(f.buf)
		if _, err := p.str(&f.buf); err != nil {
			return err
		}
		f.fields = append(f.fields, field{kind: kindString})
		f.spans = append(f.spans, span{int32(po), int32(vo - po), int32(vo), int32(len(f.buf) - vo)})
		return nil
	case c == 'n':
		if !p.lit("null") {
			return p.errf("bad literal")
		}
		return nil
	default:
		start := p.i
		if err := p.skip(depth); err != nil {
			return err
		}
		po := len(f.buf)
		f.buf = append(f.buf, f.path...)
		f.fields = append(f.fields, field{kind: kindRaw, value: p.src[start:p.i]})
		f.spans = append(f.spans, span{int32(po), int32(len(f.buf) - po), 0, 0})
		return nil
	}
}

// memoObject flattens the object value at p of a top-level key: copied
// from the memo when its bytes are those remembered for the same path
// (the same bytes at the same path and depth flatten to the same fields),
// else parsed and remembered.
func (f *flattener) memoObject(p *parser, depth int) error {
	start := p.i
	rest := p.src[start:]
	var m *objMemo
	for i := range f.objs {
		o := &f.objs[i]
		if len(rest) >= len(o.raw) && string(rest[:len(o.raw)]) == string(o.raw) && string(o.path) == string(f.path) {
			m = o
			break
		}
	}
	if m != nil {
		f.objHits++
		for _, mf := range m.fields {
			po := len(f.buf)
			f.buf = append(f.buf, m.arena[mf.po:mf.po+mf.pl]...)
			if mf.kind == kindString {
				vo := len(f.buf)
				f.buf = append(f.buf, m.arena[mf.vo:mf.vo+mf.vl]...)
				f.fields = append(f.fields, field{kind: kindString})
				f.spans = append(f.spans, span{int32(po), mf.pl, int32(vo), mf.vl})
				continue
			}
			f.fields = append(f.fields, field{kind: mf.kind, value: rest[mf.vo : mf.vo+mf.vl]})
			f.spans = append(f.spans, span{int32(po), mf.pl, 0, 0})
		}
		p.i += len(m.raw)
		return nil
	}
	first := len(f.fields)
	if err := f.object(p, depth+1); err != nil {
		return err
	}
	raw := p.src[start:p.i]
	if len(raw) < minObjMemo || len(raw) > maxObjMemoLen {
		return nil
	}
	if len(f.objs) < maxObjMemos {
		f.objs = append(f.objs, objMemo{})
		m = &f.objs[len(f.objs)-1]
	} else {
		m = &f.objs[f.objNext]
		f.objNext = (f.objNext + 1) % maxObjMemos
	}
	m.path = append(m.path[:0], f.path...)
	m.raw = append(m.raw[:0], raw...)
	m.arena, m.fields = m.arena[:0], m.fields[:0]
	for i := first; i < len(f.fields); i++ {
		sp := f.spans[i]
		mf := memoField{kind: f.fields[i].kind, po: int32(len(m.arena)), pl: sp.pl}
		m.arena = append(m.arena, f.buf[sp.po:sp.po+sp.pl]...)
		if mf.kind == kindString {
			mf.vo, mf.vl = int32(len(m.arena)), sp.vl
			m.arena = append(m.arena, f.buf[sp.vo:sp.vo+sp.vl]...)
		} else {
			v := f.fields[i].value
			// v lies inside raw (both slice p.src)
			mf.vo, mf.vl = int32(cap(raw)-cap(v)), int32(len(v))
		}
		m.fields = append(m.fields, mf)
	}
	return nil
}

// parser is a small JSON scanner.
type parser struct {
	src []byte
	i   int
}

func (p *parser) errf(msg string) error {
	return fmt.Errorf("%w: %s at offset %d", ErrBadDocument, msg, p.i)
}

func (p *parser) peek() byte {
	if p.i < len(p.src) {
		return p.src[p.i]
	}
	return 0
}

func (p *parser) ws() {
	for p.i < len(p.src) {
		switch p.src[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) lit(s string) bool {
	if len(p.src)-p.i >= len(s) && string(p.src[p.i:p.i+len(s)]) == s {
		p.i += len(s)
		return true
	}
	return false
}

// str parses a string at p.i, appends its unescaped text to *out and
// returns that text.
func (p *parser) str(out *[]byte) ([]byte, error) {
	p.i++ // opening quote
	start := len(*out)
	for {
		j := p.i + jsonscan.Plain(p.src[p.i:])
		*out = append(*out, p.src[p.i:j]...)
		p.i = j
		if j >= len(p.src) {
			return nil, p.errf("unterminated string")
		}
		c := p.src[j]
		switch {
		case c == '"':
			p.i++
			return (*out)[start:], nil
		case c == '\\':
			if err := p.escape(out); err != nil {
				return nil, err
			}
		case c < 0x20:
			// Control characters are not allowed raw in JSON; keep them
			// anyway rather than reject a log line.
			*out = append(*out, c)
			p.i++
		default:
			r, n := utf8.DecodeRune(p.src[p.i:])
			if r == utf8.RuneError && n <= 1 {
				*out = utf8.AppendRune(*out, utf8.RuneError)
				p.i++
				continue
			}
			*out = append(*out, p.src[p.i:p.i+n]...)
			p.i += n
		}
	}
}

func (p *parser) escape(out *[]byte) error {
	if p.i+1 >= len(p.src) {
		return p.errf("bad escape")
	}
	c := p.src[p.i+1]
	p.i += 2
	switch c {
	case '"', '\\', '/':
		*out = append(*out, c)
	case 'b':
		*out = append(*out, '\b')
	case 'f':
		*out = append(*out, '\f')
	case 'n':
		*out = append(*out, '\n')
	case 'r':
		*out = append(*out, '\r')
	case 't':
		*out = append(*out, '\t')
	case 'u':
		r, ok := p.hex4()
		if !ok {
			return p.errf("bad \\u escape")
		}
		if utf16IsSurrogate(r) {
			r2 := rune(-1)
			if p.i+1 < len(p.src) && p.src[p.i] == '\\' && p.src[p.i+1] == 'u' {
				save := p.i
				p.i += 2
				var ok2 bool
				r2, ok2 = p.hex4()
				if !ok2 {
					p.i = save
					r2 = -1
				}
			}
			if r >= 0xD800 && r < 0xDC00 && r2 >= 0xDC00 && r2 < 0xE000 {
				r = (r-0xD800)<<10 + (r2 - 0xDC00) + 0x10000
			} else {
				r = utf8.RuneError
			}
		}
		*out = utf8.AppendRune(*out, r)
	default:
		return p.errf("bad escape")
	}
	return nil
}

func utf16IsSurrogate(r rune) bool { return r >= 0xD800 && r < 0xE000 }

func (p *parser) hex4() (rune, bool) {
	if p.i+4 > len(p.src) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(p.src[p.i:p.i+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	p.i += 4
	return rune(v), true
}

// skip passes over one JSON value that is not a string or object at the top
// (numbers, literals, arrays), validating it.
func (p *parser) skip(depth int) error {
	if depth > maxDepth {
		return p.errf("nested too deeply")
	}
	switch c := p.peek(); {
	case c == '"':
		var scratch []byte
		_, err := p.str(&scratch)
		return err
	case c == '{' || c == '[':
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		p.i++
		p.ws()
		if p.peek() == closer {
			p.i++
			return nil
		}
		for {
			p.ws()
			if c == '{' {
				if p.peek() != '"' {
					return p.errf("expected a key")
				}
				if err := p.skip(depth + 1); err != nil {
					return err
				}
				p.ws()
				if p.peek() != ':' {
					return p.errf("expected ':'")
				}
				p.i++
				p.ws()
			}
			if err := p.skip(depth + 1); err != nil {
				return err
			}
			p.ws()
			switch p.peek() {
			case ',':
				p.i++
			case closer:
				p.i++
				return nil
			default:
				return p.errf("expected ',' or a closing bracket")
			}
		}
	case c == 't':
		if !p.lit("true") {
			return p.errf("bad literal")
		}
	case c == 'f':
		if !p.lit("false") {
			return p.errf("bad literal")
		}
	case c == 'n':
		if !p.lit("null") {
			return p.errf("bad literal")
		}
	case c == '-' || (c >= '0' && c <= '9'):
		start := p.i
		p.i++
		for p.i < len(p.src) {
			c := p.src[p.i]
			if (c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-' {
				p.i++
				continue
			}
			break
		}
		if _, err := strconv.ParseFloat(string(p.src[start:p.i]), 64); err != nil {
			return p.errf("bad number")
		}
	default:
		return p.errf("unexpected character")
	}
	return nil
}

// parseTime reads a @timestamp value: RFC 3339 (with or without fraction),
// a date, or epoch milliseconds.
func parseTime(kind uint8, v []byte) (int64, bool) {
	if kind == kindRaw {
		ms, err := strconv.ParseFloat(string(v), 64)
		if err != nil {
			return 0, false
		}
		return int64(ms * 1e6), true
	}
	return ParseTimeString(string(v))
}

// ParseTimeString parses an RFC 3339 time, a date (2006-01-02) or epoch
// milliseconds into Unix nanoseconds.
func ParseTimeString(s string) (int64, bool) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UnixNano(), true
	}
	for _, layout := range []string{"2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02T15:04", "2006-01-02", "2006-01", "2006"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UnixNano(), true
		}
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return ms * 1e6, true
	}
	return 0, false
}

// tokens calls fn for each lower-cased token of s: runs of letters, digits
// and '_', with '.' kept between two such characters (host names, versions,
// IP addresses stay one token, as Elasticsearch's standard analyzer does).
// fn gets s's own bytes for a token already in lower case, else a reused
// buffer; it must not keep or change them.
func tokens(s []byte, buf []byte, fn func(tok []byte)) []byte {
	i := 0
	for i < len(s) {
		// skip separators
		if c := s[i]; c < 0x80 {
			if wordLower[c] == 0 {
				i++
				continue
			}
		} else {
			r, n := utf8.DecodeRune(s[i:])
			if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
				i += n
				continue
			}
		}
		// A token starts at i: its ASCII run, byte by byte.
		start, lower := i, true
		for i < len(s) {
			c := s[i]
			if c >= 0x80 {
				break
			}
			if l := wordLower[c]; l != 0 {
				lower = lower && l == c
				i++
				continue
			}
			if c == '.' && i > start && i+1 < len(s) && s[i+1] < 0x80 && wordLower[s[i+1]] != 0 {
				i++
				continue
			}
			break
		}
		if i == len(s) || s[i] < 0x80 {
			if lower {
				fn(s[start:i])
				continue
			}
			buf = buf[:0]
			for _, c := range s[start:i] {
				if c != '.' {
					c = wordLower[c]
				}
				buf = append(buf, c)
			}
			fn(buf)
			continue
		}
		// Non-ASCII within the token: rune by rune from where it starts.
		buf = buf[:0]
		i = start
		for i < len(s) {
			c := s[i]
			if c < 0x80 {
				if l := wordLower[c]; l != 0 {
					buf = append(buf, l)
					i++
					continue
				}
				if c == '.' && len(buf) > 0 && i+1 < len(s) && s[i+1] < 0x80 && wordLower[s[i+1]] != 0 {
					buf = append(buf, c)
					i++
					continue
				}
				break
			}
			r, n := utf8.DecodeRune(s[i:])
			if !(unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r)) {
				break
			}
			buf = utf8.AppendRune(buf, unicode.ToLower(r))
			i += n
		}
		fn(buf)
	}
	return buf
}

// wordLower maps the ASCII word characters (letters, digits, '_') to
// themselves in lower case, every other byte to 0.
var wordLower = func() (t [256]byte) {
	for c := range 128 {
		if isWordASCII(byte(c)) {
			t[c] = byte(c)
			if c >= 'A' && c <= 'Z' {
				t[c] += 'a' - 'A'
			}
		}
	}
	return t
}()

func isWordASCII(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'
}
