// Package rbac evaluates Role, ClusterRole, RoleBinding and
// ClusterRoleBinding objects with upstream Kubernetes semantics. The
// objects are read from the API server's watch cache into an in-memory
// index, so a decision never touches etcd.
package rbac

import (
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
)

// Request is what an authorization decision is about, as upstream's
// authorizer.Attributes.
type Request struct {
	User   string
	Groups []string
	// Resource request fields.
	ResourceRequest bool
	Verb            string
	APIGroup        string
	Namespace       string
	Resource        string
	Subresource     string
	Name            string
	// Path of a non-resource request.
	Path string
}

// RuleAllows reports whether rule grants r.
func RuleAllows(r *Request, rule *rbacv1.PolicyRule) bool {
	if !verbMatches(rule.Verbs, r.Verb) {
		return false
	}
	if !r.ResourceRequest {
		return nonResourceURLMatches(rule.NonResourceURLs, r.Path)
	}
	return apiGroupMatches(rule.APIGroups, r.APIGroup) &&
		resourceMatches(rule.Resources, r.Resource, r.Subresource) &&
		resourceNameMatches(rule.ResourceNames, r.Name)
}

// RulesAllow reports whether any of rules grants r.
func RulesAllow(r *Request, rules []rbacv1.PolicyRule) bool {
	for i := range rules {
		if RuleAllows(r, &rules[i]) {
			return true
		}
	}
	return false
}

func verbMatches(verbs []string, verb string) bool {
	for _, v := range verbs {
		if v == rbacv1.VerbAll || v == verb {
			return true
		}
	}
	return false
}

func apiGroupMatches(groups []string, group string) bool {
	for _, g := range groups {
		if g == rbacv1.APIGroupAll || g == group {
			return true
		}
	}
	return false
}

// resourceMatches follows upstream: "*" matches everything, "pods/log"
// matches that subresource only, "*/scale" matches scale of any resource.
// A rule for "pods" does not grant its subresources.
func resourceMatches(resources []string, resource, sub string) bool {
	want := resource
	if sub != "" {
		want = resource + "/" + sub
	}
	for _, rr := range resources {
		switch {
		case rr == rbacv1.ResourceAll, rr == want:
			return true
		case sub != "" && strings.HasPrefix(rr, "*/") && rr[2:] == sub:
			return true
		}
	}
	return false
}

// resourceNameMatches: an empty list allows every name; otherwise the
// request must name one of them (a list or a create has no name).
func resourceNameMatches(names []string, name string) bool {
	if len(names) == 0 {
		return true
	}
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

// nonResourceURLMatches: "*" matches every path, a trailing "*" matches
// the prefix before it, anything else must be equal.
func nonResourceURLMatches(urls []string, path string) bool {
	for _, u := range urls {
		switch {
		case u == rbacv1.NonResourceAll, u == path:
			return true
		case strings.HasSuffix(u, "*") && strings.HasPrefix(path, u[:len(u)-1]):
			return true
		}
	}
	return false
}

// SubjectMatches reports whether subject s (of a binding in namespace
// bindingNS) names the requesting user or one of its groups.
func SubjectMatches(s *rbacv1.Subject, bindingNS, user string, groups []string) bool {
	switch s.Kind {
	case rbacv1.UserKind:
		return s.Name == user
	case rbacv1.GroupKind:
		for _, g := range groups {
			if g == s.Name {
				return true
			}
		}
		return false
	case rbacv1.ServiceAccountKind:
		ns := s.Namespace
		if ns == "" {
			ns = bindingNS
		}
		return ns != "" && user == ServiceAccountUser(ns, s.Name)
	}
	return false
}

// ServiceAccountUser is the user name of a service account.
func ServiceAccountUser(ns, name string) string {
	return "system:serviceaccount:" + ns + ":" + name
}
