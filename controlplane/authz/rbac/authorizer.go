package rbac

import (
	"fmt"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
)

var (
	grClusterRole = schema.GroupResource{Group: rbacv1.GroupName, Resource: "clusterrole"}
	grRole        = schema.GroupResource{Group: rbacv1.GroupName, Resource: "role"}
)

// Grant is one set of rules reaching a caller through a binding.
type Grant struct {
	// Binding describes the binding as upstream's allow reasons do.
	Binding string
	Rules   []rbacv1.PolicyRule
}

// visit calls fn with the rules of every binding that names the caller:
// the cluster role bindings, then the role bindings of namespace (when not
// empty). fn returns false to stop. Bindings whose role is missing are
// reported as errors, as upstream.
func (ix *Index) visit(user string, groups []string, namespace string, fn func(g Grant) bool) []error {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	var errs []error
	keys := callerKeys(user, groups)
	seen := map[any]bool{}
	for _, k := range keys {
		for _, b := range ix.crbBySubject[k] {
			if seen[b] {
				continue
			}
			seen[b] = true
			rules, err := ix.roleRules(b.RoleRef, "")
			if err != nil {
				errs = append(errs, err)
				continue
			}
			g := Grant{Rules: rules, Binding: fmt.Sprintf("ClusterRoleBinding %q of %s %q to %s", b.Name, b.RoleRef.Kind, b.RoleRef.Name, describeSubject(matchingSubject(b.Subjects, "", user, groups), ""))}
			if !fn(g) {
				return errs
			}
		}
	}
	if namespace == "" {
		return errs
	}
	for _, k := range keys {
		for _, b := range ix.rbBySubject[namespace+"\x00"+k] {
			if seen[b] {
				continue
			}
			seen[b] = true
			rules, err := ix.roleRules(b.RoleRef, b.Namespace)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			g := Grant{Rules: rules, Binding: fmt.Sprintf("RoleBinding %q of %s %q to %s", b.Name+"/"+b.Namespace, b.RoleRef.Kind, b.RoleRef.Name, describeSubject(matchingSubject(b.Subjects, b.Namespace, user, groups), b.Namespace))}
			if !fn(g) {
				return errs
			}
		}
	}
	return errs
}

// roleRules resolves a role reference. Caller holds mu.
func (ix *Index) roleRules(ref rbacv1.RoleRef, ns string) ([]rbacv1.PolicyRule, error) {
	switch ref.Kind {
	case "ClusterRole":
		r, ok := ix.clusterRoles[ref.Name]
		if !ok {
			return nil, apierrors.NewNotFound(grClusterRole, ref.Name)
		}
		return r.Rules, nil
	case "Role":
		if ns == "" {
			return nil, fmt.Errorf("invalid roleRef kind Role in a ClusterRoleBinding")
		}
		r, ok := ix.roles[ns+"/"+ref.Name]
		if !ok {
			return nil, apierrors.NewNotFound(grRole, ref.Name)
		}
		return r.Rules, nil
	}
	return nil, fmt.Errorf("unsupported role reference kind: %q", ref.Kind)
}

func matchingSubject(subjects []rbacv1.Subject, ns, user string, groups []string) *rbacv1.Subject {
	for i := range subjects {
		if SubjectMatches(&subjects[i], ns, user, groups) {
			return &subjects[i]
		}
	}
	return &rbacv1.Subject{Kind: rbacv1.UserKind, Name: user}
}

func describeSubject(s *rbacv1.Subject, bindingNS string) string {
	if s.Kind == rbacv1.ServiceAccountKind {
		ns := s.Namespace
		if ns == "" {
			ns = bindingNS
		}
		return fmt.Sprintf("%s %q", s.Kind, s.Name+"/"+ns)
	}
	return fmt.Sprintf("%s %q", s.Kind, s.Name)
}

// Authorize decides r. It returns allowed with upstream's reason ("RBAC:
// allowed by ..."), or not allowed with a reason only when bindings could
// not be evaluated (a missing role), as upstream.
func (ix *Index) Authorize(r *Request) (bool, string) {
	var allowedBy string
	errs := ix.visit(r.User, r.Groups, r.Namespace, func(g Grant) bool {
		if RulesAllow(r, g.Rules) {
			allowedBy = g.Binding
			return false
		}
		return true
	})
	if allowedBy != "" {
		return true, "RBAC: allowed by " + allowedBy
	}
	if len(errs) > 0 {
		return false, fmt.Sprintf("RBAC: %v", utilerrors.NewAggregate(errs))
	}
	return false, ""
}

// RulesFor returns every rule granted to the caller in namespace (cluster
// bindings included) and the errors met while resolving roles.
func (ix *Index) RulesFor(user string, groups []string, namespace string) ([]rbacv1.PolicyRule, []error) {
	var rules []rbacv1.PolicyRule
	errs := ix.visit(user, groups, namespace, func(g Grant) bool {
		rules = append(rules, g.Rules...)
		return true
	})
	return rules, errs
}
