package manager

import (
	"fmt"
	"slices"
	"strings"
)

// Selection is a parsed --controllers value: "*" turns on every controller
// that is on by default, "foo" turns foo on, "-foo" turns it off.
type Selection struct {
	star bool
	on   map[string]bool
	off  map[string]bool
}

// ParseSelection parses --controllers entries against the known specs,
// accepting canonical names and aliases. An empty list means "*".
func ParseSelection(entries []string, specs []Spec) (Selection, error) {
	sel := Selection{on: map[string]bool{}, off: map[string]bool{}}
	if len(entries) == 0 {
		sel.star = true
	}
	for _, e := range entries {
		e = strings.TrimSpace(e)
		switch {
		case e == "":
		case e == "*":
			sel.star = true
		case strings.HasPrefix(e, "-"):
			s, ok := lookup(specs, e[1:])
			if !ok {
				return sel, fmt.Errorf("%q is not in the list of known controllers", e[1:])
			}
			sel.off[s.Name] = true
		default:
			s, ok := lookup(specs, e)
			if !ok {
				return sel, fmt.Errorf("%q is not in the list of known controllers", e)
			}
			sel.on[s.Name] = true
		}
	}
	return sel, nil
}

// Enabled reports whether spec s runs under the selection.
func (sel Selection) Enabled(s Spec) bool {
	if sel.off[s.Name] {
		return false
	}
	if sel.on[s.Name] {
		return true
	}
	return sel.star && !s.DisabledByDefault
}

// Disable turns off the controllers named (canonical name or alias); names
// that are not controllers are ignored (they may be other components).
func (sel *Selection) Disable(names []string, specs []Spec) {
	for _, n := range names {
		if s, ok := lookup(specs, strings.TrimSpace(n)); ok {
			sel.off[s.Name] = true
		}
	}
}

func lookup(specs []Spec, name string) (Spec, bool) {
	for _, s := range specs {
		if s.Name == name || slices.Contains(s.Aliases, name) {
			return s, true
		}
	}
	return Spec{}, false
}

// KnownNames lists every canonical name and alias, for help text.
func KnownNames(specs []Spec) []string {
	var out []string
	for _, s := range specs {
		out = append(out, s.Name)
		out = append(out, s.Aliases...)
	}
	slices.Sort(out)
	return out
}
