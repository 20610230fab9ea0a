package bootstrap

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

// Reconcile writes the default policy through c (a privileged client).
func Reconcile(ctx context.Context, c kubernetes.Interface, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "rbac-bootstrap")
	roles := ClusterRoles()
	fillAggregated(roles)
	for i := range roles {
		if err := reconcileClusterRole(ctx, c, &roles[i], log); err != nil {
			return err
		}
	}
	for _, b := range ClusterRoleBindings() {
		if err := reconcileClusterRoleBinding(ctx, c, b, log); err != nil {
			return err
		}
	}
	for _, r := range Roles() {
		if err := reconcileRole(ctx, c, r, log); err != nil {
			return err
		}
	}
	for _, b := range RoleBindings() {
		if err := reconcileRoleBinding(ctx, c, b, log); err != nil {
			return err
		}
	}
	return nil
}

// AggregatedRules computes the rules of an aggregated role from roles:
// the rules of every role its selectors match, in name order, each rule once.
func AggregatedRules(agg *rbacv1.AggregationRule, self string, roles []*rbacv1.ClusterRole) []rbacv1.PolicyRule {
	roles = slices.Clone(roles)
	slices.SortFunc(roles, func(a, b *rbacv1.ClusterRole) int { return strings.Compare(a.Name, b.Name) })
	var out []rbacv1.PolicyRule
	for _, sel := range agg.ClusterRoleSelectors {
		s, err := metav1.LabelSelectorAsSelector(&sel)
		if err != nil {
			continue
		}
		for _, r := range roles {
			if r.Name == self || !s.Matches(labels.Set(r.Labels)) {
				continue
			}
			for _, rule := range r.Rules {
				out = appendMissing(out, rule)
			}
		}
	}
	return out
}

func appendMissing(rules []rbacv1.PolicyRule, rule rbacv1.PolicyRule) []rbacv1.PolicyRule {
	for _, have := range rules {
		if reflect.DeepEqual(have, rule) {
			return rules
		}
	}
	return append(rules, *rule.DeepCopy())
}

func autoupdate(m metav1.ObjectMeta) bool {
	return m.Annotations[AutoUpdateAnnotation] != "false"
}

// mergeMeta adds want's labels and annotations that obj lacks.
func mergeMeta(obj *metav1.ObjectMeta, want metav1.ObjectMeta) bool {
	changed := false
	for k, v := range want.Labels {
		if _, ok := obj.Labels[k]; !ok {
			if obj.Labels == nil {
				obj.Labels = map[string]string{}
			}
			obj.Labels[k] = v
			changed = true
		}
	}
	for k, v := range want.Annotations {
		if _, ok := obj.Annotations[k]; !ok {
			if obj.Annotations == nil {
				obj.Annotations = map[string]string{}
			}
			obj.Annotations[k] = v
			changed = true
		}
	}
	return changed
}

// fillAggregated computes the rules of the aggregated roles among roles
// (chains such as admin ← edit ← view included), so they work as soon as
// they are created, before the aggregation controller's first pass.
func fillAggregated(roles []rbacv1.ClusterRole) {
	ptrs := make([]*rbacv1.ClusterRole, len(roles))
	for i := range roles {
		ptrs[i] = &roles[i]
	}
	for changed := true; changed; {
		changed = false
		for _, r := range ptrs {
			if r.AggregationRule == nil {
				continue
			}
			rules := AggregatedRules(r.AggregationRule, r.Name, ptrs)
			if !reflect.DeepEqual(rules, r.Rules) {
				r.Rules, changed = rules, true
			}
		}
	}
}

func reconcileClusterRole(ctx context.Context, c kubernetes.Interface, want *rbacv1.ClusterRole, log *slog.Logger) error {
	cli := c.RbacV1().ClusterRoles()
	cur, err := cli.Get(ctx, want.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cli.Create(ctx, want, metav1.CreateOptions{})
		if err == nil || apierrors.IsAlreadyExists(err) {
			log.Debug("created cluster role", "name", want.Name)
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("cluster role %s: %w", want.Name, err)
	}
	if !autoupdate(cur.ObjectMeta) {
		return nil
	}
	next := cur.DeepCopy()
	changed := mergeMeta(&next.ObjectMeta, want.ObjectMeta)
	if want.AggregationRule != nil {
		if next.AggregationRule == nil {
			next.AggregationRule = &rbacv1.AggregationRule{}
		}
		for _, sel := range want.AggregationRule.ClusterRoleSelectors {
			found := false
			for _, have := range next.AggregationRule.ClusterRoleSelectors {
				found = found || reflect.DeepEqual(have, sel)
			}
			if !found {
				next.AggregationRule.ClusterRoleSelectors = append(next.AggregationRule.ClusterRoleSelectors, sel)
				changed = true
			}
		}
	} else {
		for _, rule := range want.Rules {
			before := len(next.Rules)
			next.Rules = appendMissing(next.Rules, rule)
			changed = changed || len(next.Rules) != before
		}
	}
	if !changed {
		return nil
	}
	if _, err := cli.Update(ctx, next, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update cluster role %s: %w", want.Name, err)
	}
	log.Info("reconciled cluster role", "name", want.Name)
	return nil
}

func mergeSubjects(have *[]rbacv1.Subject, want []rbacv1.Subject) bool {
	changed := false
	for _, s := range want {
		found := false
		for _, h := range *have {
			found = found || (h.Kind == s.Kind && h.Name == s.Name && h.Namespace == s.Namespace)
		}
		if !found {
			*have = append(*have, s)
			changed = true
		}
	}
	return changed
}

func reconcileClusterRoleBinding(ctx context.Context, c kubernetes.Interface, want rbacv1.ClusterRoleBinding, log *slog.Logger) error {
	cli := c.RbacV1().ClusterRoleBindings()
	cur, err := cli.Get(ctx, want.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if _, err = cli.Create(ctx, &want, metav1.CreateOptions{}); err == nil || apierrors.IsAlreadyExists(err) {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("cluster role binding %s: %w", want.Name, err)
	}
	if !autoupdate(cur.ObjectMeta) {
		return nil
	}
	if cur.RoleRef != want.RoleRef {
		// The role reference is immutable; leave an edited binding alone.
		log.Warn("cluster role binding refers to another role; not reconciled", "name", want.Name, "role", cur.RoleRef.Name)
		return nil
	}
	next := cur.DeepCopy()
	changed := mergeMeta(&next.ObjectMeta, want.ObjectMeta)
	changed = mergeSubjects(&next.Subjects, want.Subjects) || changed
	if !changed {
		return nil
	}
	if _, err := cli.Update(ctx, next, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update cluster role binding %s: %w", want.Name, err)
	}
	log.Info("reconciled cluster role binding", "name", want.Name)
	return nil
}

func reconcileRole(ctx context.Context, c kubernetes.Interface, want rbacv1.Role, log *slog.Logger) error {
	cli := c.RbacV1().Roles(want.Namespace)
	cur, err := cli.Get(ctx, want.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if _, err = cli.Create(ctx, &want, metav1.CreateOptions{}); err == nil || apierrors.IsAlreadyExists(err) {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("role %s/%s: %w", want.Namespace, want.Name, err)
	}
	if !autoupdate(cur.ObjectMeta) {
		return nil
	}
	next := cur.DeepCopy()
	changed := mergeMeta(&next.ObjectMeta, want.ObjectMeta)
	for _, rule := range want.Rules {
		before := len(next.Rules)
		next.Rules = appendMissing(next.Rules, rule)
		changed = changed || len(next.Rules) != before
	}
	if !changed {
		return nil
	}
	if _, err := cli.Update(ctx, next, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update role %s/%s: %w", want.Namespace, want.Name, err)
	}
	log.Info("reconciled role", "namespace", want.Namespace, "name", want.Name)
	return nil
}

func reconcileRoleBinding(ctx context.Context, c kubernetes.Interface, want rbacv1.RoleBinding, log *slog.Logger) error {
	cli := c.RbacV1().RoleBindings(want.Namespace)
	cur, err := cli.Get(ctx, want.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if _, err = cli.Create(ctx, &want, metav1.CreateOptions{}); err == nil || apierrors.IsAlreadyExists(err) {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("role binding %s/%s: %w", want.Namespace, want.Name, err)
	}
	if !autoupdate(cur.ObjectMeta) || cur.RoleRef != want.RoleRef {
		return nil
	}
	next := cur.DeepCopy()
	changed := mergeMeta(&next.ObjectMeta, want.ObjectMeta)
	changed = mergeSubjects(&next.Subjects, want.Subjects) || changed
	if !changed {
		return nil
	}
	if _, err := cli.Update(ctx, next, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update role binding %s/%s: %w", want.Namespace, want.Name, err)
	}
	log.Info("reconciled role binding", "namespace", want.Namespace, "name", want.Name)
	return nil
}
