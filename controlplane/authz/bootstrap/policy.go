// Package bootstrap holds the default RBAC policy (upstream's roles and
// bindings plus the identities of Skiff's in-process components) and
// reconciles it into the cluster at start: missing objects are created,
// objects marked rbac.authorization.k8s.io/autoupdate=true gain missing
// rules, selectors and subjects, and aggregated roles keep their rules.
package bootstrap

import (
	"maps"
	"slices"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Well-known names.
const (
	AutoUpdateAnnotation = "rbac.authorization.k8s.io/autoupdate"
	BootstrapLabel       = "kubernetes.io/bootstrapping"
	aggregateToAdmin     = "rbac.authorization.k8s.io/aggregate-to-admin"
	aggregateToEdit      = "rbac.authorization.k8s.io/aggregate-to-edit"
	aggregateToView      = "rbac.authorization.k8s.io/aggregate-to-view"
	// AggregateToControllerManager labels the controller roles Skiff's
	// controller manager runs under its single identity.
	AggregateToControllerManager = "skiff.io/aggregate-to-kube-controller-manager"

	// Identities of in-process components.
	UserKubeControllerManager = "system:kube-controller-manager"
	UserKubeScheduler         = "system:kube-scheduler"
	UserKubeProxy             = "system:kube-proxy"
	UserCRDController         = "system:skiff:crd-controller"
	UserKubernetesService     = "system:skiff:kubernetes-service"
	// UserKubeletClient is the API server's identity towards node agents
	// (pods/log, exec, attach, portforward, nodes/proxy); it is bound to
	// system:kubelet-api-admin, as kubeadm binds kube-apiserver's.
	UserKubeletClient = "kube-apiserver-kubelet-client"
	// UserDNS is the cluster DNS add-on's identity and its ClusterRole.
	UserDNS = "system:skiff-dns"
	// UserIngress is the ingress add-on's identity and its ClusterRole.
	UserIngress = "system:skiff-ingress"
	// UserDashboard is the dashboard backend's identity (backend/): it
	// lists and watches every kind for the dashboard's shared cache and
	// authorizes each user's view with the user's own access reviews. It
	// may impersonate users and groups, which client-certificate logins
	// need: it is as powerful as any user, so its key is a cluster-admin
	// credential.
	UserDashboard = "system:skiff-dashboard"
	// LogsShipperRole lets node agents (group system:nodes) write to the
	// embedded log store: POST /logs/_bulk and GET /logs/.
	LogsShipperRole = "system:skiff-logs-shipper"
	// LogsReaderRole may search the embedded log store (GET /logs/*: _search,
	// _count, _cat/indices; no _bulk, no index changes). The path is not
	// namespaced, so a ClusterRoleBinding to it lets the subject read every
	// namespace's logs through the API; it is bound to nobody by default.
	// The dashboard narrows its users' searches further to the namespaces
	// where they may get pods/log (backend/logsearch.go).
	LogsReaderRole = "system:skiff-logs-reader"
	// ControllerManagerRole aggregates the roles of the controllers the
	// controller manager runs; it is bound to UserKubeControllerManager.
	ControllerManagerRole = "system:skiff:kube-controller-manager-controllers"
)

var (
	read      = []string{"get", "list", "watch"}
	write     = []string{"create", "update", "patch", "delete", "deletecollection"}
	readWrite = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
	legacy    = ""
)

// r builds a resource rule: r(verbs, groups...).on(resources...).
type ruleBuilder struct{ rbacv1.PolicyRule }

func r(verbs []string, groups ...string) ruleBuilder {
	return ruleBuilder{rbacv1.PolicyRule{Verbs: slices.Clone(verbs), APIGroups: groups}}
}

func v(verbs ...string) []string { return verbs }

func (b ruleBuilder) on(resources ...string) ruleBuilder {
	b.Resources = resources
	return b
}

func (b ruleBuilder) names(names ...string) ruleBuilder {
	b.ResourceNames = names
	return b
}

func urls(verbs []string, u ...string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{Verbs: slices.Clone(verbs), NonResourceURLs: u}
}

func rules(bs ...any) []rbacv1.PolicyRule {
	out := make([]rbacv1.PolicyRule, 0, len(bs))
	for _, b := range bs {
		switch x := b.(type) {
		case ruleBuilder:
			out = append(out, x.PolicyRule)
		case rbacv1.PolicyRule:
			out = append(out, x)
		case []rbacv1.PolicyRule:
			out = append(out, x...)
		}
	}
	return out
}

func eventsRules() []rbacv1.PolicyRule {
	return rules(r(v("create", "update", "patch"), legacy, "events.k8s.io").on("events"))
}

func meta(name string, labels map[string]string) metav1.ObjectMeta {
	l := map[string]string{BootstrapLabel: "rbac-defaults"}
	maps.Copy(l, labels)
	return metav1.ObjectMeta{Name: name, Labels: l, Annotations: map[string]string{AutoUpdateAnnotation: "true"}}
}

func clusterRole(name string, labels map[string]string, rs ...any) rbacv1.ClusterRole {
	return rbacv1.ClusterRole{ObjectMeta: meta(name, labels), Rules: rules(rs...)}
}

func aggregated(name string, labels map[string]string, selectLabel string) rbacv1.ClusterRole {
	return rbacv1.ClusterRole{ObjectMeta: meta(name, labels), AggregationRule: &rbacv1.AggregationRule{
		ClusterRoleSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{selectLabel: "true"}}},
	}}
}

// controllerRole is a system:controller:<name> role the controller manager runs.
func controllerRole(name string, rs ...any) rbacv1.ClusterRole {
	return clusterRole("system:controller:"+name, map[string]string{AggregateToControllerManager: "true"}, rs...)
}

// ControllerNames are the controllers (upstream names of their service
// accounts) whose roles Skiff bootstraps.
var ControllerNames = []string{
	"clusterrole-aggregation-controller", "generic-garbage-collector", "namespace-controller",
	"replicaset-controller", "replication-controller", "root-ca-cert-publisher", "pod-garbage-collector",
	"deployment-controller", "statefulset-controller", "daemon-set-controller", "job-controller",
	"cronjob-controller", "endpoint-controller", "endpointslice-controller", "service-account-controller",
	"node-controller", "resourcequota-controller", "disruption-controller", "horizontal-pod-autoscaler",
	"ttl-after-finished-controller", "persistent-volume-binder", "pvc-protection-controller", "pv-protection-controller",
	LocalPathCapacityController,
}

// LocalPathCapacityController publishes local-path's CSIStorageCapacity
// objects; it may write them only in kube-system (a Role there), and read
// the nodes, volumes and classes the numbers come from.
const LocalPathCapacityController = "local-path-capacity-controller"

// ClusterRoles returns the default cluster roles.
func ClusterRoles() []rbacv1.ClusterRole {
	return []rbacv1.ClusterRole{
		clusterRole("cluster-admin", nil, r(v("*"), "*").on("*"), urls(v("*"), "*")),
		clusterRole("system:discovery", nil, urls(v("get"), "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/")),
		clusterRole("system:public-info-viewer", nil, urls(v("get"), "/healthz", "/livez", "/readyz", "/version", "/version/")),
		clusterRole("system:basic-user", nil,
			r(v("create"), "authorization.k8s.io").on("selfsubjectaccessreviews", "selfsubjectrulesreviews"),
			r(v("create"), "authentication.k8s.io").on("selfsubjectreviews")),
		clusterRole("system:monitoring", nil, urls(v("get"), "/healthz", "/healthz/*", "/livez", "/livez/*", "/metrics", "/metrics/slis", "/readyz", "/readyz/*")),
		clusterRole("system:service-account-issuer-discovery", nil, urls(v("get"), "/.well-known/openid-configuration", "/.well-known/openid-configuration/", "/openid/v1/jwks", "/openid/v1/jwks/")),

		aggregated("admin", nil, aggregateToAdmin),
		aggregated("edit", map[string]string{aggregateToAdmin: "true"}, aggregateToEdit),
		aggregated("view", map[string]string{aggregateToEdit: "true"}, aggregateToView),
		clusterRole("system:aggregate-to-admin", map[string]string{aggregateToAdmin: "true"},
			r(v("create"), "authorization.k8s.io").on("localsubjectaccessreviews"),
			r(readWrite, "rbac.authorization.k8s.io").on("roles", "rolebindings")),
		clusterRole("system:aggregate-to-edit", map[string]string{aggregateToEdit: "true"},
			r(read, legacy).on("pods/attach", "pods/proxy", "pods/exec", "pods/portforward", "secrets", "services/proxy"),
			r(v("impersonate"), legacy).on("serviceaccounts"),
			r(write, legacy).on("pods", "pods/attach", "pods/proxy", "pods/exec", "pods/portforward"),
			r(v("create"), legacy).on("pods/eviction"),
			r(write, legacy).on("replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services", "services/proxy", "persistentvolumeclaims", "configmaps", "secrets", "events"),
			r(v("create"), legacy).on("serviceaccounts/token"),
			r(write, "apps").on("statefulsets", "statefulsets/scale", "daemonsets", "deployments", "deployments/scale", "deployments/rollback", "replicasets", "replicasets/scale"),
			r(write, "autoscaling").on("horizontalpodautoscalers"),
			r(write, "batch").on("jobs", "cronjobs"),
			r(write, "extensions").on("daemonsets", "deployments", "deployments/scale", "deployments/rollback", "ingresses", "replicasets", "replicasets/scale", "replicationcontrollers/scale", "networkpolicies"),
			r(write, "policy").on("poddisruptionbudgets"),
			r(write, "networking.k8s.io").on("ingresses", "networkpolicies"),
			r(write, "coordination.k8s.io").on("leases")),
		clusterRole("system:aggregate-to-view", map[string]string{aggregateToView: "true"},
			r(read, legacy).on("pods", "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services", "services/status", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "configmaps"),
			r(read, legacy).on("limitranges", "resourcequotas", "bindings", "events", "pods/status", "resourcequotas/status", "namespaces/status", "replicationcontrollers/status", "pods/log"),
			r(read, legacy).on("namespaces"),
			r(read, "discovery.k8s.io").on("endpointslices"),
			r(read, "apps").on("controllerrevisions", "statefulsets", "statefulsets/status", "statefulsets/scale", "daemonsets", "daemonsets/status", "deployments", "deployments/status", "deployments/scale", "replicasets", "replicasets/status", "replicasets/scale"),
			r(read, "autoscaling").on("horizontalpodautoscalers", "horizontalpodautoscalers/status"),
			r(read, "batch").on("jobs", "jobs/status", "cronjobs", "cronjobs/status"),
			r(read, "extensions").on("daemonsets", "daemonsets/status", "deployments", "deployments/scale", "deployments/status", "ingresses", "ingresses/status", "replicasets", "replicasets/scale", "replicasets/status", "replicationcontrollers/scale", "networkpolicies"),
			r(read, "policy").on("poddisruptionbudgets", "poddisruptionbudgets/status"),
			r(read, "networking.k8s.io").on("ingresses", "ingresses/status", "networkpolicies"),
			r(read, "coordination.k8s.io").on("leases")),

		clusterRole("system:node", nil, NodeRoleRules()),
		clusterRole("system:node-proxier", nil,
			r(v("list", "watch"), legacy).on("services", "endpoints"),
			r(read, legacy).on("nodes"),
			r(v("list", "watch"), "discovery.k8s.io").on("endpointslices"),
			eventsRules()),
		clusterRole("system:node-bootstrapper", nil, r(v("create", "get", "list", "watch"), "certificates.k8s.io").on("certificatesigningrequests")),
		// Full access to the kubelet API (upstream's role).
		clusterRole("system:kubelet-api-admin", nil,
			r(read, legacy).on("nodes"),
			r(v("proxy"), legacy).on("nodes"),
			r(v("*"), legacy).on("nodes/proxy", "nodes/metrics", "nodes/spec", "nodes/stats", "nodes/log")),
		clusterRole("system:auth-delegator", nil,
			r(v("create"), "authentication.k8s.io").on("tokenreviews"),
			r(v("create"), "authorization.k8s.io").on("subjectaccessreviews")),
		clusterRole("system:kube-dns", nil, r(v("list", "watch"), legacy).on("endpoints", "services")),
		clusterRole("system:kube-scheduler", nil,
			eventsRules(),
			r(v("create"), "coordination.k8s.io").on("leases"),
			r(v("get", "update"), "coordination.k8s.io").on("leases").names("kube-scheduler"),
			r(read, legacy).on("nodes"),
			r(v("get", "list", "watch", "delete"), legacy).on("pods"),
			r(v("create"), legacy).on("pods/binding", "bindings"),
			r(v("patch", "update"), legacy).on("pods/status"),
			r(read, legacy).on("replicationcontrollers", "services", "namespaces", "persistentvolumeclaims", "persistentvolumes"),
			r(v("patch", "update"), legacy).on("persistentvolumeclaims", "persistentvolumes"),
			r(read, "apps", "extensions").on("replicasets"),
			r(read, "apps").on("statefulsets"),
			r(read, "policy").on("poddisruptionbudgets"),
			r(read, "storage.k8s.io").on("csinodes", "csidrivers", "csistoragecapacities", "storageclasses"),
			r(read, "scheduling.k8s.io").on("priorityclasses"),
			r(v("create"), "authentication.k8s.io").on("tokenreviews"),
			r(v("create"), "authorization.k8s.io").on("subjectaccessreviews")),
		clusterRole("system:kube-controller-manager", nil,
			eventsRules(),
			r(v("create"), "coordination.k8s.io").on("leases"),
			r(v("get", "update"), "coordination.k8s.io").on("leases").names("kube-controller-manager"),
			r(v("create"), legacy).on("secrets", "serviceaccounts"),
			r(v("delete"), legacy).on("secrets"),
			r(v("get"), legacy).on("namespaces", "secrets", "serviceaccounts"),
			r(v("update"), legacy).on("secrets", "serviceaccounts"),
			r(v("create"), "authentication.k8s.io").on("tokenreviews"),
			r(v("create"), "authorization.k8s.io").on("subjectaccessreviews"),
			r(v("list", "watch"), "*").on("*"),
			r(v("create"), legacy).on("serviceaccounts/token")),
		aggregated(ControllerManagerRole, nil, AggregateToControllerManager),

		controllerRole("clusterrole-aggregation-controller",
			r(v("escalate", "get", "list", "patch", "update", "watch"), "rbac.authorization.k8s.io").on("clusterroles")),
		controllerRole("generic-garbage-collector",
			r(v("get", "list", "watch", "patch", "update", "delete"), "*").on("*")),
		controllerRole("namespace-controller",
			r(v("get", "list", "watch", "delete"), legacy).on("namespaces"),
			r(v("update"), legacy).on("namespaces/finalize", "namespaces/status"),
			r(v("get", "list", "delete", "deletecollection"), "*").on("*")),
		controllerRole("replicaset-controller",
			r(v("get", "list", "watch", "update"), "apps", "extensions").on("replicasets"),
			r(v("update"), "apps", "extensions").on("replicasets/status"),
			r(v("update"), "apps", "extensions").on("replicasets/finalizers"),
			r(v("list", "watch", "patch", "create", "delete"), legacy).on("pods"),
			eventsRules()),
		controllerRole("replication-controller",
			r(v("get", "list", "watch", "update"), legacy).on("replicationcontrollers"),
			r(v("update"), legacy).on("replicationcontrollers/status"),
			r(v("update"), legacy).on("replicationcontrollers/finalizers"),
			r(v("list", "watch", "patch", "create", "delete"), legacy).on("pods"),
			eventsRules()),
		controllerRole("root-ca-cert-publisher",
			r(v("create", "update"), legacy).on("configmaps"),
			eventsRules()),
		controllerRole("deployment-controller",
			r(v("get", "list", "watch", "update"), "apps", "extensions").on("deployments"),
			r(v("update"), "apps", "extensions").on("deployments/status", "deployments/finalizers"),
			r(v("get", "list", "watch", "create", "update", "patch", "delete"), "apps", "extensions").on("replicasets"),
			r(v("get", "list", "watch", "update"), legacy).on("pods"),
			eventsRules()),
		controllerRole("statefulset-controller",
			r(v("get", "list", "watch"), "apps").on("statefulsets"),
			r(v("update"), "apps").on("statefulsets/status", "statefulsets/finalizers"),
			r(v("get", "list", "watch", "create", "delete", "update", "patch"), legacy).on("pods"),
			r(v("get", "list", "watch", "create", "delete", "update", "patch"), "apps").on("controllerrevisions"),
			r(v("get", "create", "update", "delete"), legacy).on("persistentvolumeclaims"),
			eventsRules()),
		controllerRole("daemon-set-controller",
			r(v("get", "list", "watch"), "apps", "extensions").on("daemonsets"),
			r(v("update"), "apps", "extensions").on("daemonsets/status", "daemonsets/finalizers"),
			r(v("list", "watch"), legacy).on("nodes"),
			r(v("list", "watch", "create", "delete", "patch"), legacy).on("pods"),
			r(v("create"), legacy).on("pods/binding"),
			r(v("get", "list", "watch", "create", "delete", "update", "patch"), "apps").on("controllerrevisions"),
			eventsRules()),
		controllerRole("job-controller",
			r(v("get", "list", "watch", "update", "patch"), "batch").on("jobs"),
			r(v("update", "patch"), "batch").on("jobs/status", "jobs/finalizers"),
			r(v("list", "watch", "create", "delete", "patch"), legacy).on("pods"),
			eventsRules()),
		controllerRole("cronjob-controller",
			r(v("get", "list", "watch", "update"), "batch").on("cronjobs"),
			r(v("get", "list", "watch", "create", "update", "delete", "patch"), "batch").on("jobs"),
			r(v("update"), "batch").on("cronjobs/status", "cronjobs/finalizers"),
			r(v("list", "delete"), legacy).on("pods"),
			eventsRules()),
		controllerRole("endpoint-controller",
			r(read, legacy).on("services", "pods"),
			r(v("get", "list", "create", "update", "delete"), legacy).on("endpoints"),
			r(v("create"), legacy).on("endpoints/restricted"),
			eventsRules()),
		controllerRole("endpointslice-controller",
			r(read, legacy).on("services", "pods", "nodes"),
			r(v("get", "list", "watch", "create", "update", "delete"), "discovery.k8s.io").on("endpointslices"),
			eventsRules()),
		controllerRole("service-account-controller",
			r(v("create"), legacy).on("serviceaccounts"),
			eventsRules()),
		controllerRole("node-controller",
			r(v("get", "list", "update", "delete", "patch"), legacy).on("nodes"),
			r(v("patch", "update"), legacy).on("nodes/status", "pods/status"),
			r(v("list", "delete"), legacy).on("pods"),
			eventsRules()),
		controllerRole("resourcequota-controller",
			r(v("list", "watch"), "*").on("*"),
			r(v("update"), legacy).on("resourcequotas/status"),
			eventsRules()),
		controllerRole("disruption-controller",
			r(read, "apps", "extensions").on("deployments", "replicasets", "statefulsets"),
			r(read, legacy).on("replicationcontrollers"),
			r(read, "policy").on("poddisruptionbudgets"),
			r(v("update"), "policy").on("poddisruptionbudgets/status"),
			r(v("get"), legacy).on("pods"),
			r(v("patch", "update"), legacy).on("pods/status"),
			r(v("get"), "*").on("*/scale"),
			eventsRules()),
		controllerRole("horizontal-pod-autoscaler",
			r(read, "autoscaling").on("horizontalpodautoscalers"),
			r(v("update"), "autoscaling").on("horizontalpodautoscalers/status"),
			r(v("get", "update"), "*").on("*/scale"),
			r(v("list"), legacy).on("pods"),
			r(read, "metrics.k8s.io").on("pods"),
			eventsRules()),
		controllerRole("ttl-after-finished-controller",
			r(v("get", "list", "watch", "delete"), "batch").on("jobs"),
			eventsRules()),
		controllerRole("persistent-volume-binder",
			r(v("get", "list", "watch", "create", "update", "delete"), legacy).on("persistentvolumes"),
			r(v("update"), legacy).on("persistentvolumes/status", "persistentvolumeclaims/status"),
			r(v("get", "list", "watch", "update"), legacy).on("persistentvolumeclaims"),
			r(read, legacy).on("pods", "nodes"),
			// local-path volumes are deleted through their node's annotations.
			r(v("patch"), legacy).on("nodes"),
			r(read, "storage.k8s.io").on("storageclasses", "csidrivers", "csistoragecapacities"),
			eventsRules()),
		controllerRole(LocalPathCapacityController,
			r(read, legacy).on("nodes", "persistentvolumes"),
			r(read, "storage.k8s.io").on("storageclasses", "csistoragecapacities")),
		controllerRole("pvc-protection-controller",
			r(v("get", "list", "watch", "update"), legacy).on("persistentvolumeclaims"),
			r(v("get", "list", "watch"), legacy).on("pods")),
		controllerRole("pv-protection-controller",
			r(v("get", "list", "watch", "update"), legacy).on("persistentvolumes")),
		controllerRole("pod-garbage-collector",
			r(v("list", "watch", "delete"), legacy).on("pods"),
			r(v("get", "list"), legacy).on("nodes"),
			r(v("patch"), legacy).on("pods/status")),

		clusterRole(UserCRDController, nil,
			r(v("get", "list", "watch", "update", "patch"), "apiextensions.k8s.io").on("customresourcedefinitions"),
			r(v("update", "patch"), "apiextensions.k8s.io").on("customresourcedefinitions/status"),
			// Cleaning up a deleted definition's custom resources: their
			// groups are not known in advance.
			r(v("list", "delete"), "*").on("*"),
			eventsRules()),

		// The cluster DNS add-on (addons/dns) only reads what it publishes.
		clusterRole(UserDNS, nil,
			r(v("list", "watch"), legacy).on("services", "namespaces"),
			r(v("list", "watch"), "discovery.k8s.io").on("endpointslices")),

		// The ingress add-on (addons/ingress) reads what it routes to and
		// writes Ingress status and events.
		clusterRole(UserIngress, nil,
			r(v("list", "watch"), "networking.k8s.io").on("ingresses", "ingressclasses"),
			r(v("update"), "networking.k8s.io").on("ingresses/status"),
			r(v("list", "watch"), legacy).on("services", "secrets", "nodes"),
			r(v("list", "watch"), "discovery.k8s.io").on("endpointslices"),
			eventsRules()),

		// The dashboard backend's shared cache reads every kind; users who
		// log in with a client certificate act through impersonation of
		// the certificate's user and groups (backend/certlogin.go).
		clusterRole(UserDashboard, nil, r(v("list", "watch"), "*").on("*"),
			r(v("impersonate"), legacy).on("users", "groups")),
		// Node agents ship container logs into the embedded log store
		// (addons/logging) through the API server.
		clusterRole(LogsShipperRole, nil, urls(v("post", "put"), "/logs/_bulk"), urls(v("get", "head"), "/logs", "/logs/")),
		clusterRole(LogsReaderRole, nil, urls(v("get", "head"), "/logs", "/logs/", "/logs/*")),
	}
}

// NodeRoleRules are the rules of the system:node role. Nodes get them from
// the node authorizer, which narrows them to their own objects; the role
// is kept for clusters that bind it explicitly, as upstream.
func NodeRoleRules() []rbacv1.PolicyRule {
	return rules(
		r(v("create"), "authentication.k8s.io").on("tokenreviews"),
		r(v("create"), "authorization.k8s.io").on("subjectaccessreviews", "localsubjectaccessreviews"),
		r(read, legacy).on("services"),
		r(v("create", "get", "list", "watch"), legacy).on("nodes"),
		r(v("update", "patch"), legacy).on("nodes/status"),
		r(v("update", "patch"), legacy).on("nodes"),
		r(v("create", "update", "patch"), legacy).on("events"),
		r(read, legacy).on("pods"),
		r(v("create", "delete"), legacy).on("pods"),
		r(v("update", "patch"), legacy).on("pods/status"),
		r(v("create"), legacy).on("pods/eviction"),
		r(read, legacy).on("configmaps", "secrets"),
		r(v("get"), legacy).on("persistentvolumeclaims", "persistentvolumes"),
		r(v("get"), legacy).on("endpoints"),
		r(v("create", "get", "list", "watch"), "certificates.k8s.io").on("certificatesigningrequests"),
		r(v("get", "update", "patch"), legacy).on("persistentvolumeclaims/status"),
		r(v("create"), legacy).on("serviceaccounts/token"),
		r(v("get"), "storage.k8s.io").on("volumeattachments"),
		r(read, "storage.k8s.io").on("csidrivers"),
		r(v("get", "create", "update", "patch", "delete"), "storage.k8s.io").on("csinodes"),
		r(v("get", "create", "update", "patch", "delete"), "coordination.k8s.io").on("leases"),
		r(read, "node.k8s.io").on("runtimeclasses"),
	)
}

func subject(kind, name string) rbacv1.Subject {
	s := rbacv1.Subject{Kind: kind, Name: name}
	if kind != rbacv1.ServiceAccountKind {
		s.APIGroup = rbacv1.GroupName
	}
	return s
}

func sa(ns, name string) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}
}

func clusterBinding(role string, subjects ...rbacv1.Subject) rbacv1.ClusterRoleBinding {
	return clusterBindingNamed(role, role, subjects...)
}

func clusterBindingNamed(name, role string, subjects ...rbacv1.Subject) rbacv1.ClusterRoleBinding {
	return rbacv1.ClusterRoleBinding{
		ObjectMeta: meta(name, nil),
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   subjects,
	}
}

// ClusterRoleBindings returns the default cluster role bindings.
func ClusterRoleBindings() []rbacv1.ClusterRoleBinding {
	out := []rbacv1.ClusterRoleBinding{
		clusterBinding("cluster-admin", subject(rbacv1.GroupKind, "system:masters")),
		clusterBinding("system:discovery", subject(rbacv1.GroupKind, "system:authenticated")),
		clusterBinding("system:basic-user", subject(rbacv1.GroupKind, "system:authenticated")),
		clusterBinding("system:public-info-viewer", subject(rbacv1.GroupKind, "system:authenticated"), subject(rbacv1.GroupKind, "system:unauthenticated")),
		clusterBinding("system:monitoring", subject(rbacv1.GroupKind, "system:monitoring")),
		clusterBinding("system:service-account-issuer-discovery", subject(rbacv1.GroupKind, "system:serviceaccounts")),
		clusterBinding("system:node"),
		clusterBinding("system:node-proxier", subject(rbacv1.UserKind, UserKubeProxy)),
		clusterBinding("system:kube-dns", sa("kube-system", "kube-dns")),
		clusterBinding("system:kube-scheduler", subject(rbacv1.UserKind, UserKubeScheduler)),
		clusterBinding("system:kube-controller-manager", subject(rbacv1.UserKind, UserKubeControllerManager)),
		clusterBinding(ControllerManagerRole, subject(rbacv1.UserKind, UserKubeControllerManager)),
		clusterBinding(UserCRDController, subject(rbacv1.UserKind, UserCRDController)),
		clusterBinding(UserDNS, subject(rbacv1.UserKind, UserDNS)),
		clusterBinding(UserIngress, subject(rbacv1.UserKind, UserIngress)),
		clusterBinding(UserDashboard, subject(rbacv1.UserKind, UserDashboard)),
		clusterBinding(LogsShipperRole, subject(rbacv1.GroupKind, "system:nodes")),
		clusterBindingNamed("system:skiff:kube-apiserver-kubelet-client", "system:kubelet-api-admin", subject(rbacv1.UserKind, UserKubeletClient)),
	}
	for _, c := range ControllerNames {
		out = append(out, clusterBinding("system:controller:"+c, sa("kube-system", c)))
	}
	return out
}

// Roles returns the default namespaced roles: the server keeps
// default/kubernetes and kube-system/kube-dns (KubeDNSService) itself.
func Roles() []rbacv1.Role {
	var out []rbacv1.Role
	for _, s := range controlPlaneServices {
		m := meta(UserKubernetesService, nil)
		m.Namespace = s[0]
		out = append(out, rbacv1.Role{ObjectMeta: m, Rules: rules(
			r(v("list", "watch", "create"), legacy).on("services", "endpoints"),
			r(v("get", "update", "patch"), legacy).on("services", "endpoints").names(s[1]),
			r(v("list", "watch", "create"), "discovery.k8s.io").on("endpointslices"),
			r(v("get", "update", "patch", "delete"), "discovery.k8s.io").on("endpointslices").names(s[1]),
		)})
	}
	m := meta("system:controller:"+LocalPathCapacityController, nil)
	m.Namespace = metav1.NamespaceSystem
	out = append(out, rbacv1.Role{ObjectMeta: m, Rules: rules(
		r(v("create", "update", "delete"), "storage.k8s.io").on("csistoragecapacities"),
	)})
	// Upstream's role for extension API servers (delegated authentication
	// reads the client and front-proxy CAs from this ConfigMap); bound by
	// whoever deploys one, e.g. the standalone metrics add-on.
	m = meta(ExtensionAPIServerAuthenticationReader, nil)
	m.Namespace = metav1.NamespaceSystem
	out = append(out, rbacv1.Role{ObjectMeta: m, Rules: rules(
		r(v("get", "list", "watch"), legacy).on("configmaps").names(ExtensionAPIServerAuthenticationConfigMap),
	)})
	return out
}

// The Role extension API servers are bound to (kube-system), and the
// ConfigMap it reads: upstream's names.
const (
	ExtensionAPIServerAuthenticationReader    = "extension-apiserver-authentication-reader"
	ExtensionAPIServerAuthenticationConfigMap = "extension-apiserver-authentication"
)

// KubeDNSService is the cluster DNS add-on's Service in kube-system.
const KubeDNSService = "kube-dns"

// controlPlaneServices are the Services (namespace, name) whose endpoints
// the server itself keeps.
var controlPlaneServices = [][2]string{{metav1.NamespaceDefault, "kubernetes"}, {metav1.NamespaceSystem, KubeDNSService}}

// RoleBindings returns the default namespaced role bindings.
func RoleBindings() []rbacv1.RoleBinding {
	var out []rbacv1.RoleBinding
	for _, s := range controlPlaneServices {
		m := meta(UserKubernetesService, nil)
		m.Namespace = s[0]
		out = append(out, rbacv1.RoleBinding{
			ObjectMeta: m,
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: UserKubernetesService},
			Subjects:   []rbacv1.Subject{subject(rbacv1.UserKind, UserKubernetesService)},
		})
	}
	name := "system:controller:" + LocalPathCapacityController
	m := meta(name, nil)
	m.Namespace = metav1.NamespaceSystem
	out = append(out, rbacv1.RoleBinding{
		ObjectMeta: m,
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{subject(rbacv1.UserKind, UserKubeControllerManager), sa(metav1.NamespaceSystem, LocalPathCapacityController)},
	})
	return out
}
