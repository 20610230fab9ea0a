package escalation

import (
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

func rule(groups, resources, verbs []string, names ...string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{APIGroups: groups, Resources: resources, Verbs: verbs, ResourceNames: names}
}

func l(s ...string) []string { return s }

func TestCovers(t *testing.T) {
	for _, tc := range []struct {
		name      string
		owner     []rbacv1.PolicyRule
		requested []rbacv1.PolicyRule
		want      bool
		missing   string
	}{
		{"exact", []rbacv1.PolicyRule{rule(l(""), l("pods"), l("get", "list"))}, []rbacv1.PolicyRule{rule(l(""), l("pods"), l("get"))}, true, ""},
		{"missing verb", []rbacv1.PolicyRule{rule(l(""), l("pods"), l("get"))}, []rbacv1.PolicyRule{rule(l(""), l("pods"), l("get", "delete"))}, false,
			`{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}`},
		{"split across owner rules", []rbacv1.PolicyRule{rule(l(""), l("pods"), l("get")), rule(l(""), l("pods"), l("list"))},
			[]rbacv1.PolicyRule{rule(l(""), l("pods"), l("get", "list"))}, true, ""},
		{"wildcards", []rbacv1.PolicyRule{rule(l("*"), l("*"), l("*"))}, []rbacv1.PolicyRule{rule(l("apps"), l("deployments/scale"), l("update"), "web")}, true, ""},
		{"requested wildcard not covered by a list", []rbacv1.PolicyRule{rule(l(""), l("pods"), l("get", "list"))}, []rbacv1.PolicyRule{rule(l(""), l("pods"), l("*"))}, false,
			`{APIGroups:[""], Resources:["pods"], Verbs:["*"]}`},
		{"subresource wildcard", []rbacv1.PolicyRule{rule(l(""), l("pods/*"), l("get"))}, []rbacv1.PolicyRule{rule(l(""), l("pods/log"), l("get"))}, true, ""},
		{"any resource's scale", []rbacv1.PolicyRule{rule(l("apps"), l("*/scale"), l("get"))}, []rbacv1.PolicyRule{rule(l("apps"), l("deployments/scale"), l("get"))}, true, ""},
		{"resource does not cover subresource", []rbacv1.PolicyRule{rule(l(""), l("pods"), l("get"))}, []rbacv1.PolicyRule{rule(l(""), l("pods/log"), l("get"))}, false,
			`{APIGroups:[""], Resources:["pods/log"], Verbs:["get"]}`},
		{"named owner covers that name only", []rbacv1.PolicyRule{rule(l(""), l("secrets"), l("get"), "a")}, []rbacv1.PolicyRule{rule(l(""), l("secrets"), l("get"), "a", "b")}, false,
			`{APIGroups:[""], Resources:["secrets"], ResourceNames:["b"], Verbs:["get"]}`},
		{"named owner does not cover unnamed", []rbacv1.PolicyRule{rule(l(""), l("secrets"), l("get"), "a")}, []rbacv1.PolicyRule{rule(l(""), l("secrets"), l("get"))}, false,
			`{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}`},
		{"non-resource prefix", []rbacv1.PolicyRule{{NonResourceURLs: l("/healthz/*"), Verbs: l("get")}}, []rbacv1.PolicyRule{{NonResourceURLs: l("/healthz/etcd"), Verbs: l("get")}}, true, ""},
		{"non-resource other path", []rbacv1.PolicyRule{{NonResourceURLs: l("/healthz"), Verbs: l("get")}}, []rbacv1.PolicyRule{{NonResourceURLs: l("/metrics"), Verbs: l("get")}}, false,
			`{NonResourceURLs:["/metrics"], Verbs:["get"]}`},
		{"other group", []rbacv1.PolicyRule{rule(l("apps"), l("deployments"), l("get"))}, []rbacv1.PolicyRule{rule(l("extensions"), l("deployments"), l("get"))}, false,
			`{APIGroups:["extensions"], Resources:["deployments"], Verbs:["get"]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, missing := Covers(tc.owner, tc.requested)
			if ok != tc.want {
				t.Fatalf("Covers = %v, want %v (missing %v)", ok, tc.want, missing)
			}
			if got := describe(missing); got != tc.missing {
				t.Fatalf("missing = %q, want %q", got, tc.missing)
			}
			if ok && len(missing) != 0 || !ok && !strings.HasPrefix(describe(missing), "{") {
				t.Fatalf("inconsistent result: %v %v", ok, missing)
			}
		})
	}
}
