package escalation_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testserver"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

func rules(verbs ...string) []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: verbs}}
}

// eventually retries fn until it stops failing (RBAC follows the watch
// cache, so a grant takes effect a moment after it is written).
func eventually(t *testing.T, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func wantForbidden(t *testing.T, err error, contains ...string) {
	t.Helper()
	if !apierrors.IsForbidden(err) {
		t.Fatalf("want 403, got %v", err)
	}
	for _, c := range contains {
		if !strings.Contains(err.Error(), c) {
			t.Fatalf("403 message %q lacks %q", err.Error(), c)
		}
	}
}

func TestEscalationAndBindChecks(t *testing.T) {
	s := testserver.Start(t)
	ctx := context.Background()
	admin := s.Client
	const ns = "esc"
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// alice may manage roles and bindings in esc and read pods there (not
	// "*": that would include the escalate and bind verbs).
	manager := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "rbac-manager"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"roles", "rolebindings"}, Verbs: []string{"get", "list", "create", "update", "patch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}},
	}}
	if _, err := admin.RbacV1().Roles(ns).Create(ctx, manager, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bind := func(name, kind, role, user string) *rbacv1.RoleBinding {
		return &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: kind, Name: role},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}}
	}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, bind("alice-manager", "Role", "rbac-manager", "alice"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := s.ComponentConfig("alice", []string{"devs"})
	if err != nil {
		t.Fatal(err)
	}
	alice := kubernetes.NewForConfigOrDie(cfg)

	// A role within what alice holds: allowed (once her grant is in force).
	eventually(t, "alice creates a reader role", func() error {
		_, err := alice.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "reader"}, Rules: rules("get")}, metav1.CreateOptions{})
		return err
	})
	// Beyond it: 403 naming the missing permission.
	_, err = alice.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "deleter"}, Rules: rules("get", "delete")}, metav1.CreateOptions{})
	wantForbidden(t, err, `user "alice" (groups=["devs" "system:authenticated"]) is attempting to grant RBAC permissions not currently held`, `{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}`)
	// Widening an existing role by update is the same escalation.
	reader, err := alice.RbacV1().Roles(ns).Get(ctx, "reader", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reader.Rules = rules("get", "delete")
	_, err = alice.RbacV1().Roles(ns).Update(ctx, reader, metav1.UpdateOptions{})
	wantForbidden(t, err, "not currently held")
	// A label change leaves the rules alone: no check.
	reader, _ = alice.RbacV1().Roles(ns).Get(ctx, "reader", metav1.GetOptions{})
	reader.Labels = map[string]string{"team": "a"}
	if _, err := alice.RbacV1().Roles(ns).Update(ctx, reader, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("metadata-only update: %v", err)
	}

	// Binding a role alice's rules cover: allowed; binding edit: 403.
	if _, err := alice.RbacV1().RoleBindings(ns).Create(ctx, bind("bob-reader", "Role", "reader", "bob"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("bind covered role: %v", err)
	}
	_, err = alice.RbacV1().RoleBindings(ns).Create(ctx, bind("bob-edit", "ClusterRole", "edit", "bob"), metav1.CreateOptions{})
	wantForbidden(t, err, "not currently held")
	// Binding a role that does not exist is refused too.
	_, err = alice.RbacV1().RoleBindings(ns).Create(ctx, bind("bob-ghost", "Role", "ghost", "bob"), metav1.CreateOptions{})
	wantForbidden(t, err, `"ghost" not found`)

	// The bind verb on edit (by name) lets alice bind it without holding it.
	if _, err := admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "bind-edit"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"clusterroles"}, Verbs: []string{"bind"}, ResourceNames: []string{"edit"}},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, bind("alice-bind-edit", "Role", "bind-edit", "alice"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "alice binds edit with the bind verb", func() error {
		_, err := alice.RbacV1().RoleBindings(ns).Create(ctx, bind("bob-edit", "ClusterRole", "edit", "bob"), metav1.CreateOptions{})
		return err
	})
	// ... but not admin, which the bind grant does not name.
	_, err = alice.RbacV1().RoleBindings(ns).Create(ctx, bind("bob-admin", "ClusterRole", "admin", "bob"), metav1.CreateOptions{})
	wantForbidden(t, err, "not currently held")

	// The escalate verb on roles lets alice write rules she does not hold.
	if _, err := admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "escalator"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"roles"}, Verbs: []string{"escalate"}},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, bind("alice-escalator", "Role", "escalator", "alice"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "alice escalates with the escalate verb", func() error {
		_, err := alice.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "deleter"}, Rules: rules("get", "delete")}, metav1.CreateOptions{})
		return err
	})

	// Cluster scope: a user allowed to create cluster roles still cannot
	// write one beyond their rules, nor an aggregated one.
	if _, err := admin.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "cr-writer"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"clusterroles"}, Verbs: []string{"create"}},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "carol-cr-writer"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cr-writer"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "carol"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ccfg, err := s.ComponentConfig("carol", nil)
	if err != nil {
		t.Fatal(err)
	}
	carol := kubernetes.NewForConfigOrDie(ccfg)
	eventually(t, "carol creates a cluster role she covers", func() error {
		_, err := carol.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "cr-sub"}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"clusterroles"}, Verbs: []string{"create"}},
		}}, metav1.CreateOptions{})
		return err
	})
	_, err = carol.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "cr-pods"}, Rules: rules("list")}, metav1.CreateOptions{})
	wantForbidden(t, err, `{APIGroups:[""], Resources:["pods"], Verbs:["list"]}`)
	_, err = carol.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "cr-agg"},
		AggregationRule: &rbacv1.AggregationRule{ClusterRoleSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"x": "y"}}}}}, metav1.CreateOptions{})
	wantForbidden(t, err, "must have cluster-admin privileges to use the aggregationRule")

	// The admin (system:masters) is never checked.
	if _, err := admin.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "cr-agg"},
		AggregationRule: &rbacv1.AggregationRule{ClusterRoleSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"x": "y"}}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("admin aggregated role: %v", err)
	}
}
