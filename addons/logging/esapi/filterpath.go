package esapi

import "strings"

// filterPath is a parsed filter_path query parameter: a response keeps the
// fields whose dotted path (array elements are transparent, as in
// Elasticsearch) matches one of its patterns, with everything under them;
// an object or array left empty is dropped. A pattern segment may hold `*`
// wildcards (`items.*.status`). nil keeps everything.
type filterPath [][]string

// Field selections: what of a field a filterPath keeps.
const (
	selNone = iota // nothing
	selSome        // some of its fields (descend)
	selAll         // the field with everything under it
)

// parseFilterPath parses a comma list of patterns. ok is false for what is
// not implemented (exclusions `-x`, `**`): the caller then answers
// unfiltered, a superset of what was asked.
func parseFilterPath(s string) (fp filterPath, ok bool) {
	if s == "" {
		return nil, true
	}
	for p := range strings.SplitSeq(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if strings.HasPrefix(p, "-") || strings.Contains(p, "**") {
			return nil, false
		}
		segs := strings.Split(p, ".")
		for _, sg := range segs {
			if sg == "" {
				return nil, false
			}
		}
		fp = append(fp, segs)
	}
	if len(fp) == 0 {
		return nil, true
	}
	return fp, true
}

// sel says what fp keeps of the field at path.
func (fp filterPath) sel(path ...string) int {
	if fp == nil {
		return selAll
	}
	best := selNone
	for _, pat := range fp {
		n := min(len(pat), len(path))
		match := true
		for i := range n {
			if !globMatch(pat[i], path[i]) {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		if len(pat) <= len(path) {
			return selAll
		}
		best = selSome
	}
	return best
}

// globMatch reports whether name matches pat, where `*` matches any run of
// characters (none included).
func globMatch(pat, name string) bool {
	star := strings.IndexByte(pat, '*')
	if star < 0 {
		return pat == name
	}
	if !strings.HasPrefix(name, pat[:star]) {
		return false
	}
	rest, name := pat[star+1:], name[star:]
	for {
		if globMatch(rest, name) {
			return true
		}
		if name == "" {
			return false
		}
		name = name[1:]
	}
}
