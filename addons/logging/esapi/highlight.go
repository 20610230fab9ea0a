package esapi

import (
	"encoding/json"
	"strings"

	"github.com/skiffhq/skiff/addons/logging/store"
)

// highlighter wraps the query's words in <em> tags in the requested
// fields, as Elasticsearch's highlight does for text fields (whole
// values, no fragmenting). As there, a field is highlighted only with the
// words of clauses that query that field (require_field_match, default
// true); a clause on every field ("" or "*", query_string without a
// default field) or on a matching pattern counts for each field.
type highlighter struct {
	fields map[string]bool // dotted names; "*" = all
	words  []fieldWord
	// anyField: require_field_match is false, every word counts everywhere.
	anyField bool
	pre      string
	post     string
}

// fieldWord is one lower-cased query word and the field its clause queries.
type fieldWord struct {
	field string
	word  string
}

func highlightTerms(body *searchBody, q store.Query) *highlighter {
	if body == nil || len(body.Highlight) == 0 {
		return nil
	}
	var hl struct {
		Fields            json.RawMessage `json:"fields"`
		PreTags           []string        `json:"pre_tags"`
		PostTags          []string        `json:"post_tags"`
		RequireFieldMatch *bool           `json:"require_field_match"`
	}
	if json.Unmarshal(body.Highlight, &hl) != nil {
		return nil
	}
	h := &highlighter{fields: map[string]bool{}, pre: "<em>", post: "</em>"}
	h.anyField = hl.RequireFieldMatch != nil && !*hl.RequireFieldMatch
	if len(hl.PreTags) > 0 && len(hl.PostTags) > 0 {
		h.pre, h.post = hl.PreTags[0], hl.PostTags[0]
	}
	var fm map[string]json.RawMessage
	if json.Unmarshal(hl.Fields, &fm) == nil {
		for f := range fm {
			h.fields[f] = true
		}
	} else {
		var fl []map[string]json.RawMessage
		if json.Unmarshal(hl.Fields, &fl) == nil {
			for _, m := range fl {
				for f := range m {
					h.fields[f] = true
				}
			}
		}
	}
	var walk func(q store.Query)
	walk = func(q store.Query) {
		switch q := q.(type) {
		case store.Text:
			for _, w := range strings.FieldsFunc(strings.ToLower(q.Text), notWord) {
				h.words = append(h.words, fieldWord{q.Field, w})
			}
		case store.Term:
			// A term on name.keyword queries the keyword field, not the
			// text one, and is not highlighted there.
			if !strings.HasSuffix(q.Field, ".keyword") {
				h.words = append(h.words, fieldWord{q.Field, strings.ToLower(q.Value)})
			}
		case store.Bool:
			for _, l := range [][]store.Query{q.Must, q.Filter, q.Should} {
				for _, s := range l {
					walk(s)
				}
			}
		}
	}
	walk(q)
	if len(h.words) == 0 || len(h.fields) == 0 {
		return nil
	}
	return h
}

func notWord(r rune) bool {
	return !(r == '_' || r == '.' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || r > 0x7f)
}

func isWordByte(c byte) bool {
	return c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c > 0x7f
}

// apply returns the highlight object for a hit's source, or nil.
func (h *highlighter) apply(src []byte) []byte {
	out := map[string][]string{}
	_ = store.FlatFields(src, func(path [][]byte, v []byte, isString bool) {
		if !isString {
			return
		}
		parts := make([]string, len(path))
		for i, p := range path {
			parts[i] = string(p)
		}
		name := strings.Join(parts, ".")
		if !h.fields[name] && !h.fields["*"] {
			return
		}
		words := h.wordsFor(name)
		if len(words) == 0 {
			return
		}
		if s, ok := h.mark(string(v), words); ok {
			out[name] = append(out[name], s)
		}
	})
	if len(out) == 0 {
		return nil
	}
	b, _ := json.Marshal(out)
	return b
}

// wordsFor returns the words that highlight the document field name.
func (h *highlighter) wordsFor(name string) []string {
	var out []string
	for _, fw := range h.words {
		if h.anyField || store.FieldMatches(fw.field, name) {
			out = append(out, fw.word)
		}
	}
	return out
}

func (h *highlighter) mark(v string, words []string) (string, bool) {
	lower := strings.ToLower(v)
	if len(lower) != len(v) {
		return "", false
	}
	var b strings.Builder
	last, found := 0, false
	for i := 0; i < len(lower); {
		matched := 0
		if i == 0 || !isWordByte(lower[i-1]) {
			for _, w := range words {
				if w != "" && strings.HasPrefix(lower[i:], w) && (i+len(w) == len(lower) || !isWordByte(lower[i+len(w)])) && len(w) > matched {
					matched = len(w)
				}
			}
		}
		if matched == 0 {
			i++
			continue
		}
		b.WriteString(v[last:i])
		b.WriteString(h.pre)
		b.WriteString(v[i : i+matched])
		b.WriteString(h.post)
		i += matched
		last, found = i, true
	}
	b.WriteString(v[last:])
	return b.String(), found
}
