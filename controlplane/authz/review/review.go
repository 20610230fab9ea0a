// Package review serves authorization.k8s.io/v1: SelfSubjectAccessReview,
// SelfSubjectRulesReview, SubjectAccessReview and LocalSubjectAccessReview.
// They are created and answered, never stored, as upstream; `kubectl auth
// can-i` (with --list and --as) uses them.
package review

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/skiffhq/skiff/controlplane/apiserver"
	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	"github.com/skiffhq/skiff/controlplane/authz"
	"github.com/skiffhq/skiff/controlplane/authz/node"
	"github.com/skiffhq/skiff/controlplane/authz/rbac"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Group is the API group served.
const Group = "authorization.k8s.io"

// Reviews answers access and rules reviews.
type Reviews struct {
	// Authorizer decides access reviews (the server's whole chain).
	Authorizer apiserver.Authorizer
	// RBAC lists rules for rules reviews.
	RBAC *rbac.Index
}

// Register adds the four review resources to reg.
func (rv *Reviews) Register(reg *registry.Registry) {
	add := func(kind, plural string, namespaced bool, newObj func() runtime.Object, create func(context.Context, string, runtime.Object) (runtime.Object, error)) {
		reg.Add(&registry.Resource{
			Group: Group, Version: "v1", Kind: kind, Plural: plural, Namespaced: namespaced,
			Verbs: []string{"create"}, New: newObj, Create: create,
		})
	}
	add("SelfSubjectAccessReview", "selfsubjectaccessreviews", false, func() runtime.Object { return &authorizationv1.SelfSubjectAccessReview{} }, rv.selfSubjectAccessReview)
	add("SelfSubjectRulesReview", "selfsubjectrulesreviews", false, func() runtime.Object { return &authorizationv1.SelfSubjectRulesReview{} }, rv.selfSubjectRulesReview)
	add("SubjectAccessReview", "subjectaccessreviews", false, func() runtime.Object { return &authorizationv1.SubjectAccessReview{} }, rv.subjectAccessReview)
	add("LocalSubjectAccessReview", "localsubjectaccessreviews", true, func() runtime.Object { return &authorizationv1.LocalSubjectAccessReview{} }, rv.localSubjectAccessReview)
}

func invalid(kind string, errs field.ErrorList) error {
	return apierrors.NewInvalid(schema.GroupKind{Group: Group, Kind: kind}, "", errs)
}

// validateAttributes checks that exactly one kind of attributes is set.
func validateAttributes(res *authorizationv1.ResourceAttributes, nonRes *authorizationv1.NonResourceAttributes) field.ErrorList {
	spec := field.NewPath("spec")
	var errs field.ErrorList
	switch {
	case res != nil && nonRes != nil:
		errs = append(errs, field.Invalid(spec.Child("nonResourceAttributes"), nonRes, `cannot be specified in combination with resourceAttributes`))
	case res == nil && nonRes == nil:
		errs = append(errs, field.Invalid(spec.Child("resourceAttributes"), nonRes, `exactly one of nonResourceAttributes or resourceAttributes must be specified`))
	}
	return errs
}

func (rv *Reviews) decide(ctx context.Context, u *apiserver.UserInfo, res *authorizationv1.ResourceAttributes, nonRes *authorizationv1.NonResourceAttributes) authorizationv1.SubjectAccessReviewStatus {
	info := &apiserver.RequestInfo{}
	if res != nil {
		info.IsResourceRequest = true
		info.Verb = res.Verb
		info.APIGroup = res.Group
		info.APIVersion = res.Version
		info.Namespace = res.Namespace
		info.Resource = res.Resource
		info.Subresource = res.Subresource
		info.Name = res.Name
	} else {
		info.Verb = nonRes.Verb
		info.Path = nonRes.Path
	}
	allowed, reason, err := rv.Authorizer.Authorize(ctx, u, info)
	st := authorizationv1.SubjectAccessReviewStatus{Allowed: allowed, Reason: reason}
	if err != nil {
		st.EvaluationError = err.Error()
	}
	return st
}

func caller(ctx context.Context) *apiserver.UserInfo {
	u, ok := apiserver.UserFrom(ctx)
	if !ok || u == nil {
		return &apiserver.UserInfo{Name: "system:anonymous", Groups: []string{"system:unauthenticated"}}
	}
	return u
}

func (rv *Reviews) selfSubjectAccessReview(ctx context.Context, _ string, obj runtime.Object) (runtime.Object, error) {
	in := obj.(*authorizationv1.SelfSubjectAccessReview)
	if errs := validateAttributes(in.Spec.ResourceAttributes, in.Spec.NonResourceAttributes); len(errs) > 0 {
		return nil, invalid("SelfSubjectAccessReview", errs)
	}
	out := in.DeepCopy()
	out.Status = rv.decide(ctx, caller(ctx), in.Spec.ResourceAttributes, in.Spec.NonResourceAttributes)
	return out, nil
}

// subjectUser is the user a SubjectAccessReview asks about.
func subjectUser(spec *authorizationv1.SubjectAccessReviewSpec) *apiserver.UserInfo {
	u := &apiserver.UserInfo{Name: spec.User, UID: spec.UID, Groups: append([]string(nil), spec.Groups...)}
	if len(spec.Extra) > 0 {
		u.Extra = map[string][]string{}
		for k, v := range spec.Extra {
			u.Extra[k] = append([]string(nil), v...)
		}
	}
	return u
}

func validateSubject(spec *authorizationv1.SubjectAccessReviewSpec) field.ErrorList {
	errs := validateAttributes(spec.ResourceAttributes, spec.NonResourceAttributes)
	if spec.User == "" && len(spec.Groups) == 0 {
		errs = append(errs, field.Invalid(field.NewPath("spec", "user"), spec.User, `at least one of user or group must be specified`))
	}
	return errs
}

func (rv *Reviews) subjectAccessReview(ctx context.Context, _ string, obj runtime.Object) (runtime.Object, error) {
	in := obj.(*authorizationv1.SubjectAccessReview)
	if errs := validateSubject(&in.Spec); len(errs) > 0 {
		return nil, invalid("SubjectAccessReview", errs)
	}
	out := in.DeepCopy()
	out.Status = rv.decide(ctx, subjectUser(&in.Spec), in.Spec.ResourceAttributes, in.Spec.NonResourceAttributes)
	return out, nil
}

func (rv *Reviews) localSubjectAccessReview(ctx context.Context, ns string, obj runtime.Object) (runtime.Object, error) {
	in := obj.(*authorizationv1.LocalSubjectAccessReview)
	errs := validateSubject(&in.Spec)
	if in.Spec.NonResourceAttributes != nil {
		errs = append(errs, field.Invalid(field.NewPath("spec", "nonResourceAttributes"), in.Spec.NonResourceAttributes, `disallowed on this kind of request`))
	}
	if len(errs) > 0 {
		return nil, invalid("LocalSubjectAccessReview", errs)
	}
	if in.Namespace == "" {
		in.Namespace = ns
	}
	if in.Spec.ResourceAttributes.Namespace == "" {
		in.Spec.ResourceAttributes.Namespace = ns
	}
	if in.Namespace != ns || in.Spec.ResourceAttributes.Namespace != ns {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("spec.resourceAttributes.namespace must match namespace: %v", ns))
	}
	out := in.DeepCopy()
	out.Status = rv.decide(ctx, subjectUser(&in.Spec), in.Spec.ResourceAttributes, nil)
	return out, nil
}

func (rv *Reviews) selfSubjectRulesReview(ctx context.Context, _ string, obj runtime.Object) (runtime.Object, error) {
	in := obj.(*authorizationv1.SelfSubjectRulesReview)
	if in.Spec.Namespace == "" {
		return nil, apierrors.NewBadRequest("no namespace on request")
	}
	u := caller(ctx)
	out := in.DeepCopy()
	var errs []error
	if _, isNode := node.NodeName(u); isNode {
		errs = append(errs, fmt.Errorf("node authorizer does not support user rule resolution"))
	}
	rules, rbacErrs := rv.RBAC.RulesFor(u.Name, u.Groups, in.Spec.Namespace)
	errs = append(errs, rbacErrs...)
	for _, g := range u.Groups {
		if g == authz.SystemMasters {
			// The superuser group is allowed everything whatever is bound.
			rules = append(rules,
				rbacRule([]string{"*"}, []string{"*"}, []string{"*"}, nil),
				rbacRule([]string{"*"}, nil, nil, []string{"*"}))
		}
	}
	status := authorizationv1.SubjectRulesReviewStatus{ResourceRules: []authorizationv1.ResourceRule{}, NonResourceRules: []authorizationv1.NonResourceRule{}}
	seen := map[string]bool{}
	for _, r := range rules {
		k := fmt.Sprint(r.Verbs, r.APIGroups, r.Resources, r.ResourceNames, r.NonResourceURLs)
		if seen[k] {
			continue
		}
		seen[k] = true
		if len(r.NonResourceURLs) > 0 {
			status.NonResourceRules = append(status.NonResourceRules, authorizationv1.NonResourceRule{Verbs: r.Verbs, NonResourceURLs: r.NonResourceURLs})
			continue
		}
		status.ResourceRules = append(status.ResourceRules, authorizationv1.ResourceRule{Verbs: r.Verbs, APIGroups: r.APIGroups, Resources: r.Resources, ResourceNames: r.ResourceNames})
	}
	sort.SliceStable(status.NonResourceRules, func(i, j int) bool {
		return strings.Join(status.NonResourceRules[i].NonResourceURLs, ",") < strings.Join(status.NonResourceRules[j].NonResourceURLs, ",")
	})
	if len(errs) > 0 {
		status.Incomplete = true
		status.EvaluationError = utilerrors.NewAggregate(errs).Error()
	}
	out.Status = status
	return out, nil
}
