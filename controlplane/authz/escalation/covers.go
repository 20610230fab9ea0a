// Package escalation keeps RBAC from being a ladder: as upstream's RBAC
// storage, a user may create or change a Role or ClusterRole only with
// rules they already hold (or the "escalate" verb on it), and may bind a
// role only when they hold its rules (or the "bind" verb on it). Members of
// system:masters are exempt.
package escalation

import (
	"fmt"
	"sort"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
)

// Covers reports whether the owner's rules grant everything requested
// grants; when not, it returns the atomic rules that are missing.
func Covers(owner, requested []rbacv1.PolicyRule) (bool, []rbacv1.PolicyRule) {
	var missing []rbacv1.PolicyRule
	for _, req := range requested {
		for _, atom := range breakdown(req) {
			covered := false
			for i := range owner {
				if ruleCovers(&owner[i], &atom) {
					covered = true
					break
				}
			}
			if !covered {
				missing = append(missing, atom)
			}
		}
	}
	return len(missing) == 0, missing
}

// breakdown splits a rule into rules of one verb and one group, resource
// and resource name (or one non-resource URL) each.
func breakdown(r rbacv1.PolicyRule) []rbacv1.PolicyRule {
	var out []rbacv1.PolicyRule
	for _, group := range r.APIGroups {
		for _, res := range r.Resources {
			for _, verb := range r.Verbs {
				if len(r.ResourceNames) == 0 {
					out = append(out, rbacv1.PolicyRule{APIGroups: []string{group}, Resources: []string{res}, Verbs: []string{verb}})
					continue
				}
				for _, name := range r.ResourceNames {
					out = append(out, rbacv1.PolicyRule{APIGroups: []string{group}, Resources: []string{res}, Verbs: []string{verb}, ResourceNames: []string{name}})
				}
			}
		}
	}
	for _, url := range r.NonResourceURLs {
		for _, verb := range r.Verbs {
			out = append(out, rbacv1.PolicyRule{NonResourceURLs: []string{url}, Verbs: []string{verb}})
		}
	}
	return out
}

// ruleCovers reports whether owner grants all of sub, an atomic rule.
func ruleCovers(owner, sub *rbacv1.PolicyRule) bool {
	return allIn(owner.Verbs, sub.Verbs, rbacv1.VerbAll) &&
		allIn(owner.APIGroups, sub.APIGroups, rbacv1.APIGroupAll) &&
		resourcesCover(owner.Resources, sub.Resources) &&
		urlsCover(owner.NonResourceURLs, sub.NonResourceURLs) &&
		namesCover(owner.ResourceNames, sub.ResourceNames)
}

// allIn: every want is in have, or have holds the wildcard.
func allIn(have, want []string, wildcard string) bool {
	for _, w := range want {
		if !contains(have, w) && !contains(have, wildcard) {
			return false
		}
	}
	return true
}

// resourcesCover: "*" covers all, "pods/*" covers every pods subresource
// and "*/scale" the scale subresource of every resource.
func resourcesCover(have, want []string) bool {
	if contains(have, rbacv1.ResourceAll) {
		return true
	}
	for _, w := range want {
		if contains(have, w) {
			continue
		}
		res, sub, ok := strings.Cut(w, "/")
		if !ok || !(contains(have, res+"/*") || contains(have, "*/"+sub)) {
			return false
		}
	}
	return true
}

// urlsCover: a trailing "*" covers every path with that prefix.
func urlsCover(have, want []string) bool {
	for _, w := range want {
		ok := false
		for _, h := range have {
			if h == w || (strings.HasSuffix(h, "*") && strings.HasPrefix(w, strings.TrimSuffix(h, "*"))) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// namesCover: an owner rule without names covers any; one with names
// covers only those, and never an unnamed request.
func namesCover(have, want []string) bool {
	if len(have) == 0 {
		return true
	}
	return len(want) > 0 && allIn(have, want, "\x00")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// describe renders missing rules one per line, sorted, in the compact
// form upstream's message uses.
func describe(rules []rbacv1.PolicyRule) string {
	lines := make([]string, 0, len(rules))
	seen := map[string]bool{}
	for _, r := range rules {
		var parts []string
		add := func(name string, vals []string) {
			if len(vals) == 0 {
				return
			}
			q := make([]string, len(vals))
			for i, v := range vals {
				q[i] = fmt.Sprintf("%q", v)
			}
			parts = append(parts, fmt.Sprintf("%s:[%s]", name, strings.Join(q, ", ")))
		}
		add("APIGroups", r.APIGroups)
		add("Resources", r.Resources)
		add("ResourceNames", r.ResourceNames)
		add("NonResourceURLs", r.NonResourceURLs)
		add("Verbs", r.Verbs)
		line := "{" + strings.Join(parts, ", ") + "}"
		if !seen[line] {
			seen[line] = true
			lines = append(lines, line)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
