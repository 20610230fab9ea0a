package review

import rbacv1 "k8s.io/api/rbac/v1"

func rbacRule(verbs, groups, resources, urls []string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{Verbs: verbs, APIGroups: groups, Resources: resources, NonResourceURLs: urls}
}
