package esapi

import (
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/skiffhq/skiff/addons/logging/store"
)

// ErrQueryString is wrapped by query_string syntax errors.
var ErrQueryString = errors.New("query_string")

// maxQueryDepth bounds nesting in query_string input.
const maxQueryDepth = 50

// parseQueryString parses Lucene query syntax as Elasticsearch's
// query_string does: terms, field:value, "phrases", AND/OR/NOT, &&/||/!,
// +/- modifiers, parentheses, field:(groups), * and ? wildcards, ranges
// ([a TO b], {a TO b}, field:>=x), _exists_:field. Adjacent clauses join
// with defaultAnd (AND) or OR. Boosts (^n) and fuzziness (~n) are accepted
// and ignored.
func parseQueryString(s, defaultField string, defaultAnd bool) (store.Query, error) {
	p := &qsParser{s: s, defField: defaultField, defAnd: defaultAnd}
	p.ws()
	if p.eof() {
		return store.MatchAll{}, nil
	}
	q, err := p.or(defaultField, 0)
	if err != nil {
		return nil, err
	}
	p.ws()
	if !p.eof() {
		return nil, p.errf("unexpected %q", p.s[p.i:min(len(p.s), p.i+10)])
	}
	return q, nil
}

type qsParser struct {
	s        string
	i        int
	defField string
	defAnd   bool
}

type clause struct {
	q   store.Query
	mod byte // 0, '+', '-'
}

func (p *qsParser) errf(format string, a ...any) error {
	return fmt.Errorf("%w: %s at position %d", ErrQueryString, fmt.Sprintf(format, a...), p.i)
}

func (p *qsParser) eof() bool { return p.i >= len(p.s) }

func (p *qsParser) ws() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == '\n' || p.s[p.i] == '\r') {
		p.i++
	}
}

// keyword reports whether an operator word is at p.i (followed by a
// separator), without consuming it.
func (p *qsParser) keyword(w string) bool {
	if !strings.HasPrefix(p.s[p.i:], w) {
		return false
	}
	j := p.i + len(w)
	if w == "&&" || w == "||" {
		return true
	}
	return j >= len(p.s) || p.s[j] == ' ' || p.s[j] == '(' || p.s[j] == '\t' || p.s[j] == '\n'
}

func (p *qsParser) clauseStart() bool {
	if p.eof() {
		return false
	}
	c := p.s[p.i]
	if c == ')' {
		return false
	}
	return !(p.keyword("AND") || p.keyword("OR") || p.keyword("&&") || p.keyword("||"))
}

// or parses clauses joined by OR (and by adjacency when the default
// operator is OR).
func (p *qsParser) or(field string, depth int) (store.Query, error) {
	if depth > maxQueryDepth {
		return nil, p.errf("nested too deeply")
	}
	var cls []clause
	for {
		c, err := p.and(field, depth)
		if err != nil {
			return nil, err
		}
		cls = append(cls, c)
		p.ws()
		if p.keyword("OR") {
			p.i += 2
		} else if p.keyword("||") {
			p.i += 2
		} else if !p.defAnd && p.clauseStart() {
			// implicit OR
		} else {
			break
		}
		p.ws()
		if !p.clauseStart() {
			return nil, p.errf("expected a clause after OR")
		}
	}
	return combine(cls, false), nil
}

// and parses clauses joined by AND (and by adjacency when the default
// operator is AND). It returns one clause.
func (p *qsParser) and(field string, depth int) (clause, error) {
	var cls []clause
	for {
		c, err := p.unary(field, depth)
		if err != nil {
			return clause{}, err
		}
		cls = append(cls, c)
		p.ws()
		if p.keyword("AND") {
			p.i += 3
		} else if p.keyword("&&") {
			p.i += 2
		} else if p.defAnd && p.clauseStart() {
			// implicit AND
		} else {
			break
		}
		p.ws()
		if !p.clauseStart() {
			return clause{}, p.errf("expected a clause after AND")
		}
	}
	if len(cls) == 1 {
		return cls[0], nil
	}
	return clause{q: combine(cls, true)}, nil
}

// combine builds a bool query from clauses joined by AND (all) or OR.
func combine(cls []clause, all bool) store.Query {
	if len(cls) == 1 && cls[0].mod == 0 {
		return cls[0].q
	}
	var b store.Bool
	for _, c := range cls {
		switch {
		case c.mod == '-':
			b.MustNot = append(b.MustNot, c.q)
		case c.mod == '+' || all:
			b.Must = append(b.Must, c.q)
		default:
			b.Should = append(b.Should, c.q)
		}
	}
	if len(b.Must) == 0 && len(b.Should) == 0 {
		// Only negations: match everything else.
		b.Must = []store.Query{store.MatchAll{}}
	}
	return b
}

func (p *qsParser) unary(field string, depth int) (clause, error) {
	p.ws()
	switch {
	case p.keyword("NOT"):
		p.i += 3
		c, err := p.unary(field, depth+1)
		if err != nil {
			return clause{}, err
		}
		return clause{q: negate(c), mod: '-'}, nil
	case !p.eof() && (p.s[p.i] == '!' || p.s[p.i] == '-' || p.s[p.i] == '+'):
		m := p.s[p.i]
		p.i++
		c, err := p.unary(field, depth+1)
		if err != nil {
			return clause{}, err
		}
		if m == '+' {
			return clause{q: c.q, mod: '+'}, nil
		}
		return clause{q: negate(c), mod: '-'}, nil
	}
	q, err := p.primary(field, depth)
	return clause{q: q}, err
}

// negate returns the query a '-' clause excludes.
func negate(c clause) store.Query {
	if c.mod == '-' {
		// double negation
		return store.Bool{MustNot: []store.Query{c.q}, Must: []store.Query{store.MatchAll{}}}
	}
	return c.q
}

func (p *qsParser) primary(field string, depth int) (store.Query, error) {
	p.ws()
	if p.eof() {
		return nil, p.errf("unexpected end of query")
	}
	if p.s[p.i] == '(' {
		p.i++
		q, err := p.or(field, depth+1)
		if err != nil {
			return nil, err
		}
		p.ws()
		if p.eof() || p.s[p.i] != ')' {
			return nil, p.errf("missing ')'")
		}
		p.i++
		p.suffix()
		return q, nil
	}
	// field:... ?
	if f, ok := p.fieldPrefix(); ok {
		field = f
		p.ws()
		if p.eof() {
			return nil, p.errf("missing value after %s:", f)
		}
		if p.s[p.i] == '(' {
			p.i++
			q, err := p.or(field, depth+1)
			if err != nil {
				return nil, err
			}
			p.ws()
			if p.eof() || p.s[p.i] != ')' {
				return nil, p.errf("missing ')'")
			}
			p.i++
			p.suffix()
			return q, nil
		}
	}
	return p.value(field)
}

// fieldPrefix consumes "name:" when present.
func (p *qsParser) fieldPrefix() (string, bool) {
	var b strings.Builder
	j := p.i
	for j < len(p.s) {
		c := p.s[j]
		if c == '\\' && j+1 < len(p.s) {
			b.WriteByte(p.s[j+1])
			j += 2
			continue
		}
		if c == ':' {
			if b.Len() == 0 {
				return "", false
			}
			p.i = j + 1
			return b.String(), true
		}
		if c == ' ' || c == '\t' || c == '(' || c == ')' || c == '"' || c == '[' || c == ']' || c == '{' || c == '}' || c == '^' || c == '~' {
			return "", false
		}
		b.WriteByte(c)
		j++
	}
	return "", false
}

func (p *qsParser) suffix() {
	for !p.eof() && (p.s[p.i] == '^' || p.s[p.i] == '~') {
		p.i++
		for !p.eof() && (p.s[p.i] == '.' || (p.s[p.i] >= '0' && p.s[p.i] <= '9')) {
			p.i++
		}
	}
}

func (p *qsParser) value(field string) (store.Query, error) {
	c := p.s[p.i]
	switch {
	case c == '"':
		p.i++
		var b strings.Builder
		for {
			if p.eof() {
				return nil, p.errf("unterminated phrase")
			}
			ch := p.s[p.i]
			if ch == '\\' && p.i+1 < len(p.s) {
				b.WriteByte(p.s[p.i+1])
				p.i += 2
				continue
			}
			p.i++
			if ch == '"' {
				break
			}
			b.WriteByte(ch)
		}
		p.suffix()
		return store.Text{Field: fieldOr(field), Text: b.String(), Phrase: true}, nil
	case c == '[' || c == '{':
		return p.rangeQuery(field)
	case c == '>' || c == '<':
		op := string(c)
		p.i++
		if !p.eof() && p.s[p.i] == '=' {
			op += "="
			p.i++
		}
		v, _, err := p.word()
		if err != nil {
			return nil, err
		}
		r := store.Range{Field: fieldOr(field)}
		switch op {
		case ">":
			r.GT = v
		case ">=":
			r.GTE = v
		case "<":
			r.LT = v
		default:
			r.LTE = v
		}
		return r, nil
	}
	w, wild, err := p.word()
	if err != nil {
		return nil, err
	}
	p.suffix()
	if field == "_exists_" {
		return store.Exists{Field: w}, nil
	}
	if wild {
		if w == "*" {
			if field == "" || field == "*" {
				return store.MatchAll{}, nil
			}
			return store.Exists{Field: field}, nil
		}
		return store.Wildcard{Field: fieldOr(field), Pattern: w}, nil
	}
	return store.Text{Field: fieldOr(field), Text: w}, nil
}

func fieldOr(f string) string {
	if f == "" {
		return "*"
	}
	return f
}

// word reads a bare term; wild reports unescaped * or ?.
func (p *qsParser) word() (string, bool, error) {
	var b strings.Builder
	wild := false
	for !p.eof() {
		c := p.s[p.i]
		if c == '\\' && p.i+1 < len(p.s) {
			b.WriteByte(p.s[p.i+1])
			p.i += 2
			continue
		}
		if c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '(' || c == ')' || c == '"' || c == '^' || c == '~' || c == '[' || c == ']' || c == '{' || c == '}' {
			break
		}
		if c == '*' || c == '?' {
			wild = true
		}
		b.WriteByte(c)
		p.i++
	}
	if b.Len() == 0 {
		if !p.eof() {
			return "", false, p.errf("unexpected %q", p.s[p.i])
		}
		return "", false, p.errf("expected a term")
	}
	return b.String(), wild, nil
}

func (p *qsParser) rangeQuery(field string) (store.Query, error) {
	incLo := p.s[p.i] == '['
	p.i++
	p.ws()
	lo, err := p.rangeBound()
	if err != nil {
		return nil, err
	}
	p.ws()
	if !strings.HasPrefix(p.s[p.i:], "TO") {
		return nil, p.errf("expected TO in range")
	}
	p.i += 2
	p.ws()
	hi, err := p.rangeBound()
	if err != nil {
		return nil, err
	}
	p.ws()
	if p.eof() || (p.s[p.i] != ']' && p.s[p.i] != '}') {
		return nil, p.errf("unterminated range")
	}
	incHi := p.s[p.i] == ']'
	p.i++
	r := store.Range{Field: fieldOr(field)}
	if lo != "*" {
		if incLo {
			r.GTE = lo
		} else {
			r.GT = lo
		}
	}
	if hi != "*" {
		if incHi {
			r.LTE = hi
		} else {
			r.LT = hi
		}
	}
	return r, nil
}

func (p *qsParser) rangeBound() (string, error) {
	if !p.eof() && p.s[p.i] == '"' {
		p.i++
		j := strings.IndexByte(p.s[p.i:], '"')
		if j < 0 {
			return "", p.errf("unterminated quoted bound")
		}
		v := p.s[p.i : p.i+j]
		p.i += j + 1
		return v, nil
	}
	start := p.i
	for !p.eof() && !unicode.IsSpace(rune(p.s[p.i])) && p.s[p.i] != ']' && p.s[p.i] != '}' {
		p.i++
	}
	if p.i == start {
		return "", p.errf("expected a range bound")
	}
	return p.s[start:p.i], nil
}
