package escalation

import (
	"context"
	"fmt"
	"reflect"
	"time"

	"github.com/skiffhq/skiff/controlplane/apiserver"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Rules resolves what a user holds and what a role reference grants (the
// RBAC index).
type Rules interface {
	RulesFor(user string, groups []string, namespace string) ([]rbacv1.PolicyRule, []error)
	RoleRefRules(ref rbacv1.RoleRef, namespace string) ([]rbacv1.PolicyRule, error)
}

// Plugin is the escalation check, run as an internal validating
// admission step for the four RBAC resources.
type Plugin struct {
	// Authorizer answers the "escalate" and "bind" checks.
	Authorizer apiserver.Authorizer
	Rules      Rules
	// RoleWait is how long a just-created role may take to reach the
	// index before a binding to it is refused (default 2s).
	RoleWait time.Duration
}

var _ apiserver.AdmissionPlugin = (*Plugin)(nil)

const group = rbacv1.GroupName

// Name implements apiserver.AdmissionPlugin.
func (p *Plugin) Name() string { return "RBACEscalation" }

// Admit implements apiserver.AdmissionPlugin; the check only validates.
func (p *Plugin) Admit(context.Context, *apiserver.Attributes) error { return nil }

// Validate implements apiserver.AdmissionPlugin.
func (p *Plugin) Validate(ctx context.Context, a *apiserver.Attributes) error {
	if a.Resource.Group != group || a.Subresource != "" ||
		(a.Operation != apiserver.OpCreate && a.Operation != apiserver.OpUpdate) {
		return nil
	}
	if a.User == nil || superuser(a.User) {
		// In-process callers without a user never come from the network.
		return nil
	}
	gr := schema.GroupResource{Group: group, Resource: a.Resource.Plural}
	switch obj := a.Object.(type) {
	case *rbacv1.Role:
		old, _ := a.OldObject.(*rbacv1.Role)
		if old != nil && reflect.DeepEqual(old.Rules, obj.Rules) {
			return nil
		}
		return p.checkRole(ctx, a.User, gr, a.Namespace, obj.Name, obj.Rules, false)
	case *rbacv1.ClusterRole:
		old, _ := a.OldObject.(*rbacv1.ClusterRole)
		if old != nil && reflect.DeepEqual(old.Rules, obj.Rules) && reflect.DeepEqual(old.AggregationRule, obj.AggregationRule) {
			return nil
		}
		return p.checkRole(ctx, a.User, gr, "", obj.Name, obj.Rules, obj.AggregationRule != nil)
	case *rbacv1.RoleBinding:
		old, _ := a.OldObject.(*rbacv1.RoleBinding)
		if old != nil && old.RoleRef == obj.RoleRef && reflect.DeepEqual(old.Subjects, obj.Subjects) {
			return nil
		}
		return p.checkBinding(ctx, a.User, gr, a.Namespace, obj.Name, obj.RoleRef)
	case *rbacv1.ClusterRoleBinding:
		old, _ := a.OldObject.(*rbacv1.ClusterRoleBinding)
		if old != nil && old.RoleRef == obj.RoleRef && reflect.DeepEqual(old.Subjects, obj.Subjects) {
			return nil
		}
		return p.checkBinding(ctx, a.User, gr, "", obj.Name, obj.RoleRef)
	}
	return nil
}

func superuser(u *apiserver.UserInfo) bool {
	for _, g := range u.Groups {
		if g == "system:masters" {
			return true
		}
	}
	return false
}

func (p *Plugin) allowed(ctx context.Context, u *apiserver.UserInfo, verb, resource, ns, name string) bool {
	ok, _, _ := p.Authorizer.Authorize(ctx, u, &apiserver.RequestInfo{
		IsResourceRequest: true, Verb: verb, APIGroup: group, APIVersion: "v1",
		Resource: resource, Namespace: ns, Name: name,
	})
	return ok
}

// checkRole: the user holds every rule, or may escalate on this role.
func (p *Plugin) checkRole(ctx context.Context, u *apiserver.UserInfo, gr schema.GroupResource, ns, name string, rules []rbacv1.PolicyRule, aggregated bool) error {
	if p.allowed(ctx, u, "escalate", gr.Resource, ns, name) {
		return nil
	}
	if aggregated {
		return apierrors.NewForbidden(gr, name, fmt.Errorf("must have cluster-admin privileges to use the aggregationRule"))
	}
	if err := p.confirmNoEscalation(u, ns, rules); err != nil {
		return apierrors.NewForbidden(gr, name, err)
	}
	return nil
}

// checkBinding: the user may bind the referenced role, or holds its rules.
func (p *Plugin) checkBinding(ctx context.Context, u *apiserver.UserInfo, gr schema.GroupResource, ns, name string, ref rbacv1.RoleRef) error {
	resource := "clusterroles"
	if ref.Kind == "Role" {
		resource = "roles"
	}
	if ref.APIGroup == group && p.allowed(ctx, u, "bind", resource, ns, ref.Name) {
		return nil
	}
	rules, err := p.roleRefRules(ctx, ref, ns)
	if err != nil {
		return apierrors.NewForbidden(gr, name, err)
	}
	if err := p.confirmNoEscalation(u, ns, rules); err != nil {
		return apierrors.NewForbidden(gr, name, err)
	}
	return nil
}

// roleRefRules resolves ref, giving a role created just before a moment
// to reach the index (it follows the watch cache).
func (p *Plugin) roleRefRules(ctx context.Context, ref rbacv1.RoleRef, ns string) ([]rbacv1.PolicyRule, error) {
	wait := p.RoleWait
	if wait == 0 {
		wait = 2 * time.Second
	}
	deadline := time.Now().Add(wait)
	for {
		rules, err := p.Rules.RoleRefRules(ref, ns)
		if err == nil || !apierrors.IsNotFound(err) || time.Now().After(deadline) {
			return rules, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (p *Plugin) confirmNoEscalation(u *apiserver.UserInfo, ns string, rules []rbacv1.PolicyRule) error {
	owner, resolveErrs := p.Rules.RulesFor(u.Name, u.Groups, ns)
	ok, missing := Covers(owner, rules)
	if ok {
		return nil
	}
	msg := fmt.Sprintf("user %q (groups=%q) is attempting to grant RBAC permissions not currently held:\n%s", u.Name, u.Groups, describe(missing))
	if len(resolveErrs) > 0 {
		msg += fmt.Sprintf("; resolution errors: %v", resolveErrs)
	}
	return fmt.Errorf("%s", msg)
}
