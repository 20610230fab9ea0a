// Package authz decides who may do what on the API server: the union of
// the node authorizer (kubelets) and RBAC, behind upstream's superuser
// group system:masters. Sub-packages hold RBAC (rbac), the node authorizer
// and its admission checks (node), the default policy (bootstrap) and the
// authorization.k8s.io review APIs (review).
package authz
