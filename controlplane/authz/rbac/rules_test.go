package rbac

import (
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

func TestRuleAllows(t *testing.T) {
	res := func(verb, group, resource, sub, name string) *Request {
		return &Request{ResourceRequest: true, Verb: verb, APIGroup: group, Resource: resource, Subresource: sub, Name: name}
	}
	url := func(verb, path string) *Request { return &Request{Verb: verb, Path: path} }
	rule := func(verbs, groups, resources, names []string) rbacv1.PolicyRule {
		return rbacv1.PolicyRule{Verbs: verbs, APIGroups: groups, Resources: resources, ResourceNames: names}
	}
	s := func(v ...string) []string { return v }
	cases := []struct {
		name string
		rule rbacv1.PolicyRule
		req  *Request
		want bool
	}{
		{"exact", rule(s("get"), s(""), s("pods"), nil), res("get", "", "pods", "", "p"), true},
		{"other verb", rule(s("get"), s(""), s("pods"), nil), res("list", "", "pods", "", ""), false},
		{"verb star", rule(s("*"), s(""), s("pods"), nil), res("deletecollection", "", "pods", "", ""), true},
		{"other group", rule(s("get"), s(""), s("deployments"), nil), res("get", "apps", "deployments", "", "d"), false},
		{"group star", rule(s("get"), s("*"), s("deployments"), nil), res("get", "apps", "deployments", "", "d"), true},
		{"resource star", rule(s("get"), s(""), s("*"), nil), res("get", "", "pods", "log", "p"), true},
		{"resource does not grant subresource", rule(s("get"), s(""), s("pods"), nil), res("get", "", "pods", "log", "p"), false},
		{"subresource", rule(s("get"), s(""), s("pods/log"), nil), res("get", "", "pods", "log", "p"), true},
		{"subresource does not grant resource", rule(s("get"), s(""), s("pods/log"), nil), res("get", "", "pods", "", "p"), false},
		{"star slash sub", rule(s("get"), s("*"), s("*/scale"), nil), res("get", "apps", "deployments", "scale", "d"), true},
		{"star slash sub other sub", rule(s("get"), s("*"), s("*/scale"), nil), res("get", "apps", "deployments", "status", "d"), false},
		{"star slash sub no sub", rule(s("get"), s("*"), s("*/scale"), nil), res("get", "apps", "deployments", "", "d"), false},
		{"resource slash star is literal", rule(s("get"), s(""), s("pods/*"), nil), res("get", "", "pods", "log", "p"), false},
		{"name listed", rule(s("get"), s(""), s("pods"), s("a", "b")), res("get", "", "pods", "", "b"), true},
		{"name not listed", rule(s("get"), s(""), s("pods"), s("a")), res("get", "", "pods", "", "c"), false},
		{"names never grant list", rule(s("list"), s(""), s("pods"), s("a")), res("list", "", "pods", "", ""), false},
		{"url exact", rbacv1.PolicyRule{Verbs: s("get"), NonResourceURLs: s("/healthz")}, url("get", "/healthz"), true},
		{"url exact only", rbacv1.PolicyRule{Verbs: s("get"), NonResourceURLs: s("/healthz")}, url("get", "/healthz/etcd"), false},
		{"url prefix", rbacv1.PolicyRule{Verbs: s("get"), NonResourceURLs: s("/healthz/*")}, url("get", "/healthz/etcd"), true},
		{"url prefix needs slash", rbacv1.PolicyRule{Verbs: s("get"), NonResourceURLs: s("/healthz/*")}, url("get", "/healthzx"), false},
		{"url star", rbacv1.PolicyRule{Verbs: s("*"), NonResourceURLs: s("*")}, url("post", "/anything"), true},
		{"url rule never grants resources", rbacv1.PolicyRule{Verbs: s("*"), NonResourceURLs: s("*")}, res("get", "", "pods", "", ""), false},
		{"resource rule never grants urls", rule(s("*"), s("*"), s("*"), nil), url("get", "/metrics"), false},
	}
	for _, c := range cases {
		if got := RuleAllows(c.req, &c.rule); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

func TestSubjectMatches(t *testing.T) {
	groups := []string{"devs", "system:authenticated"}
	cases := []struct {
		s    rbacv1.Subject
		ns   string
		user string
		want bool
	}{
		{rbacv1.Subject{Kind: "User", Name: "alice"}, "", "alice", true},
		{rbacv1.Subject{Kind: "User", Name: "alice"}, "", "bob", false},
		{rbacv1.Subject{Kind: "Group", Name: "devs"}, "", "bob", true},
		{rbacv1.Subject{Kind: "Group", Name: "ops"}, "", "bob", false},
		{rbacv1.Subject{Kind: "ServiceAccount", Name: "robot", Namespace: "a"}, "b", "system:serviceaccount:a:robot", true},
		{rbacv1.Subject{Kind: "ServiceAccount", Name: "robot"}, "b", "system:serviceaccount:b:robot", true},
		{rbacv1.Subject{Kind: "ServiceAccount", Name: "robot", Namespace: "a"}, "", "system:serviceaccount:b:robot", false},
	}
	for _, c := range cases {
		if got := SubjectMatches(&c.s, c.ns, c.user, groups); got != c.want {
			t.Errorf("%+v ns=%q user=%q: got %v", c.s, c.ns, c.user, got)
		}
	}
}
