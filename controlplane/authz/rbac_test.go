package authz_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/skiffhq/skiff/internal/testserver"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func bindClusterRole(t *testing.T, s *testserver.Server, name string, rules []rbacv1.PolicyRule, subjects ...rbacv1.Subject) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.Client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   subjects,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// expectForbidden polls until path answers 403 with message want, or
// (want == "") until it answers anything but 403.
func expect(t *testing.T, id *identity, method, path string, want string) {
	t.Helper()
	eventually(t, method+" "+path, func() error {
		code, body := id.do(t, method, path, nil)
		got := forbiddenMessage(code, body)
		if want == "" && code != http.StatusForbidden {
			return nil
		}
		if want != "" && got == want {
			return nil
		}
		return fmt.Errorf("got %d %s, want %q", code, body, want)
	})
}

// testClusterScope: cluster-scoped resources need a ClusterRoleBinding; a
// namespaced RoleBinding of a ClusterRole grants only inside its namespace.
func testClusterScope(t *testing.T, s *testserver.Server) {
	bob := as(t, s, "bob")
	expect(t, bob, "GET", "/api/v1/nodes", `nodes is forbidden: User "bob" cannot list resource "nodes" in API group "" at the cluster scope`)
	expect(t, bob, "GET", "/api/v1/namespaces/default", `namespaces "default" is forbidden: User "bob" cannot get resource "namespaces" in API group "" in the namespace "default"`)
	bindClusterRole(t, s, "bob-nodes", []rbacv1.PolicyRule{{Verbs: []string{"list"}, APIGroups: []string{""}, Resources: []string{"nodes"}}}, user("bob"))
	expect(t, bob, "GET", "/api/v1/nodes", "")
	expect(t, bob, "GET", "/api/v1/nodes/n1", `nodes "n1" is forbidden: User "bob" cannot get resource "nodes" in API group "" at the cluster scope`)

	ctx := context.Background()
	mustCreateNS(t, s, "bob-ns")
	if _, err := s.Client.RbacV1().RoleBindings("bob-ns").Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "bob-view"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"},
		Subjects:   []rbacv1.Subject{user("bob")},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect(t, bob, "GET", "/api/v1/namespaces/bob-ns/pods", "")
	expect(t, bob, "GET", "/api/v1/pods", `pods is forbidden: User "bob" cannot list resource "pods" in API group "" at the cluster scope`)
	expect(t, bob, "GET", "/api/v1/namespaces/default/pods", `pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the namespace "default"`)
	// view does not read secrets.
	expect(t, bob, "GET", "/api/v1/namespaces/bob-ns/secrets", `secrets is forbidden: User "bob" cannot list resource "secrets" in API group "" in the namespace "bob-ns"`)
}

// testMissingRole: a binding to a role that does not exist is reported in
// the 403 as upstream's RBAC evaluation error.
func testMissingRole(t *testing.T, s *testserver.Server) {
	ctx := context.Background()
	mustCreateNS(t, s, "ghost")
	carol := as(t, s, "carol")
	expect(t, carol, "GET", "/api/v1/namespaces/ghost/pods", `pods is forbidden: User "carol" cannot list resource "pods" in API group "" in the namespace "ghost"`)
	if _, err := s.Client.RbacV1().RoleBindings("ghost").Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "to-nothing"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "no-such-role"},
		Subjects:   []rbacv1.Subject{user("carol")},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect(t, carol, "GET", "/api/v1/namespaces/ghost/pods", `pods is forbidden: User "carol" cannot list resource "pods" in API group "" in the namespace "ghost": RBAC: clusterrole.rbac.authorization.k8s.io "no-such-role" not found`)
	if _, err := s.Client.RbacV1().RoleBindings("ghost").Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "to-no-role"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "absent"},
		Subjects:   []rbacv1.Subject{user("carol")},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect(t, carol, "GET", "/api/v1/namespaces/ghost/pods", `pods is forbidden: User "carol" cannot list resource "pods" in API group "" in the namespace "ghost": RBAC: [clusterrole.rbac.authorization.k8s.io "no-such-role" not found, role.rbac.authorization.k8s.io "absent" not found]`)
	// Once the role exists, the binding grants.
	if _, err := s.Client.RbacV1().Roles("ghost").Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "absent"}, Rules: []rbacv1.PolicyRule{{Verbs: []string{"list"}, APIGroups: []string{""}, Resources: []string{"pods"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect(t, carol, "GET", "/api/v1/namespaces/ghost/pods", "")
}

// testResourceNames: a rule with resourceNames grants only the named
// objects, and never a list.
func testResourceNames(t *testing.T, s *testserver.Server) {
	mustCreateNS(t, s, "names")
	dave := as(t, s, "dave")
	bindRole(t, s, "names", "one-cm", []rbacv1.PolicyRule{{Verbs: []string{"get", "update"}, APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"allowed"}}}, user("dave"))
	expect(t, dave, "GET", "/api/v1/namespaces/names/configmaps/allowed", "")
	expect(t, dave, "GET", "/api/v1/namespaces/names/configmaps/other", `configmaps "other" is forbidden: User "dave" cannot get resource "configmaps" in API group "" in the namespace "names"`)
	expect(t, dave, "GET", "/api/v1/namespaces/names/configmaps", `configmaps is forbidden: User "dave" cannot list resource "configmaps" in API group "" in the namespace "names"`)
	expect(t, dave, "DELETE", "/api/v1/namespaces/names/configmaps/allowed", `configmaps "allowed" is forbidden: User "dave" cannot delete resource "configmaps" in API group "" in the namespace "names"`)
}

// testNonResourceURLs: exact paths and trailing "*" prefixes.
func testNonResourceURLs(t *testing.T, s *testserver.Server) {
	erin := as(t, s, "erin")
	expect(t, erin, "GET", "/metrics", `forbidden: User "erin" cannot get path "/metrics"`)
	expect(t, erin, "GET", "/custom/a/b", `forbidden: User "erin" cannot get path "/custom/a/b"`)
	// Discovery is open to every authenticated user (system:discovery).
	expect(t, erin, "GET", "/apis", "")
	bindClusterRole(t, s, "erin-urls", []rbacv1.PolicyRule{{Verbs: []string{"get"}, NonResourceURLs: []string{"/metrics", "/custom/*"}}}, user("erin"))
	expect(t, erin, "GET", "/metrics", "")
	expect(t, erin, "GET", "/custom/a/b", "")
	expect(t, erin, "GET", "/customx", `forbidden: User "erin" cannot get path "/customx"`)
	expect(t, erin, "GET", "/metrics/extra", `forbidden: User "erin" cannot get path "/metrics/extra"`)
	expect(t, erin, "POST", "/metrics", `forbidden: User "erin" cannot post path "/metrics"`)
}

// testSubjects: Group and ServiceAccount subjects.
func testSubjects(t *testing.T, s *testserver.Server) {
	mustCreateNS(t, s, "subjects")
	bindRole(t, s, "subjects", "by-group", []rbacv1.PolicyRule{{Verbs: []string{"list"}, APIGroups: []string{""}, Resources: []string{"configmaps"}}},
		rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "team-a"})
	bindRole(t, s, "subjects", "by-sa", []rbacv1.PolicyRule{{Verbs: []string{"list"}, APIGroups: []string{""}, Resources: []string{"secrets"}}},
		rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: "robot", Namespace: "subjects"})
	member := as(t, s, "frank", "team-a")
	outsider := as(t, s, "gina", "team-b")
	robot := as(t, s, "system:serviceaccount:subjects:robot", "system:serviceaccounts", "system:serviceaccounts:subjects")
	otherRobot := as(t, s, "system:serviceaccount:default:robot", "system:serviceaccounts", "system:serviceaccounts:default")
	expect(t, member, "GET", "/api/v1/namespaces/subjects/configmaps", "")
	expect(t, outsider, "GET", "/api/v1/namespaces/subjects/configmaps", `configmaps is forbidden: User "gina" cannot list resource "configmaps" in API group "" in the namespace "subjects"`)
	expect(t, robot, "GET", "/api/v1/namespaces/subjects/secrets", "")
	expect(t, otherRobot, "GET", "/api/v1/namespaces/subjects/secrets", `secrets is forbidden: User "system:serviceaccount:default:robot" cannot list resource "secrets" in API group "" in the namespace "subjects"`)
	// Removing the binding takes the grant away.
	if err := s.Client.RbacV1().RoleBindings("subjects").Delete(context.Background(), "by-group", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expect(t, member, "GET", "/api/v1/namespaces/subjects/configmaps", `configmaps is forbidden: User "frank" cannot list resource "configmaps" in API group "" in the namespace "subjects"`)
}

// testAggregation: the aggregation controller fills an aggregated role
// from the roles its selectors match, and follows their changes.
func testAggregation(t *testing.T, s *testserver.Server) {
	ctx := context.Background()
	crs := s.Client.RbacV1().ClusterRoles()
	if _, err := crs.Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta:      metav1.ObjectMeta{Name: "monitoring"},
		AggregationRule: &rbacv1.AggregationRule{ClusterRoleSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"example.com/aggregate-to-monitoring": "true"}}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	endpoints := rbacv1.PolicyRule{Verbs: []string{"get", "list"}, APIGroups: []string{""}, Resources: []string{"endpoints"}}
	if _, err := crs.Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "monitoring-endpoints", Labels: map[string]string{"example.com/aggregate-to-monitoring": "true"}},
		Rules:      []rbacv1.PolicyRule{endpoints},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rulesOf := func(name string) []rbacv1.PolicyRule {
		r, err := crs.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return r.Rules
	}
	eventually(t, "aggregated rules", func() error {
		if got := rulesOf("monitoring"); len(got) != 1 || !slices.Equal(got[0].Resources, endpoints.Resources) {
			return fmt.Errorf("rules %v", got)
		}
		return nil
	})
	// A binding to the aggregated role grants the aggregated rules.
	if _, err := s.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "hank-monitoring"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "monitoring"},
		Subjects:   []rbacv1.Subject{user("hank")},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	hank := as(t, s, "hank")
	expect(t, hank, "GET", "/api/v1/endpoints", "")
	// Unlabeling the part removes its rules; hand-written rules are replaced.
	part, err := crs.Get(ctx, "monitoring-endpoints", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	part.Labels = nil
	if _, err := crs.Update(ctx, part, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "rules removed", func() error {
		if got := rulesOf("monitoring"); len(got) != 0 {
			return fmt.Errorf("rules %v", got)
		}
		return nil
	})
	expect(t, hank, "GET", "/api/v1/endpoints", `endpoints is forbidden: User "hank" cannot list resource "endpoints" in API group "" at the cluster scope`)
}

// testDefaultPolicy: the bootstrapped roles and bindings exist, admin ⊇
// edit ⊇ view through aggregation, and a deleted default role comes back
// on the next reconcile while user edits survive.
func testDefaultPolicy(t *testing.T, s *testserver.Server) {
	ctx := context.Background()
	for _, name := range []string{"cluster-admin", "admin", "edit", "view", "system:discovery", "system:basic-user", "system:public-info-viewer",
		"system:node", "system:node-proxier", "system:kube-scheduler", "system:kube-controller-manager", "system:auth-delegator",
		"system:controller:namespace-controller", "system:controller:generic-garbage-collector", "system:controller:clusterrole-aggregation-controller"} {
		if _, err := s.Client.RbacV1().ClusterRoles().Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Errorf("cluster role %s: %v", name, err)
		}
	}
	crb, err := s.Client.RbacV1().ClusterRoleBindings().Get(ctx, "system:public-info-viewer", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var groups []string
	for _, sub := range crb.Subjects {
		groups = append(groups, sub.Name)
	}
	if !slices.Equal(groups, []string{"system:authenticated", "system:unauthenticated"}) {
		t.Errorf("system:public-info-viewer subjects = %v", groups)
	}
	has := func(role, resource, verb string) bool {
		r, err := s.Client.RbacV1().ClusterRoles().Get(ctx, role, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, rule := range r.Rules {
			if slices.Contains(rule.Resources, resource) && slices.Contains(rule.Verbs, verb) {
				return true
			}
		}
		return false
	}
	for _, c := range []struct {
		role, resource, verb string
		want                 bool
	}{
		{"view", "pods/log", "get", true},
		{"view", "secrets", "get", false},
		{"edit", "pods/log", "get", true},
		{"edit", "secrets", "get", true},
		{"edit", "rolebindings", "create", false},
		{"admin", "rolebindings", "create", true},
		{"admin", "pods/log", "get", true},
	} {
		if got := has(c.role, c.resource, c.verb); got != c.want {
			t.Errorf("%s grants %s %s = %v, want %v", c.role, c.verb, c.resource, got, c.want)
		}
	}
}
