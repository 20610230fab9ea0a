package node

import (
	"context"
	"fmt"
	"strings"

	"github.com/skiffhq/skiff/controlplane/apiserver"
	"github.com/skiffhq/skiff/controlplane/authz"
	"github.com/skiffhq/skiff/controlplane/authz/rbac"
	rbacv1 "k8s.io/api/rbac/v1"
)

// Identity of kubelets, as upstream.
const (
	NodesGroup = "system:nodes"
	UserPrefix = "system:node:"
	// LeaseNamespace holds node heartbeats.
	LeaseNamespace = "kube-node-lease"
)

// NodeName returns the node a user is the kubelet of.
func NodeName(u *apiserver.UserInfo) (string, bool) {
	if u == nil {
		return "", false
	}
	name, ok := strings.CutPrefix(u.Name, UserPrefix)
	if !ok || name == "" {
		return "", false
	}
	for _, g := range u.Groups {
		if g == NodesGroup {
			return name, true
		}
	}
	return "", false
}

// Authorizer is upstream's Node authorization mode.
type Authorizer struct {
	Graph *Graph
	// ClaimVolume returns the volume a claim is bound to ("" if none or
	// unknown); with it a node may get the PersistentVolumes of the claims
	// its pods use (pod → claim → volume, as upstream's graph).
	ClaimVolume func(namespace, name string) string
}

var _ authz.Authorizer = (*Authorizer)(nil)

func rule(groups, resources, verbs []string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{APIGroups: groups, Resources: resources, Verbs: verbs}
}

var (
	core  = []string{""}
	read  = []string{"get", "list", "watch"}
	write = []string{"create", "update", "patch"}
)

// nodeRules are what every node may do regardless of the graph; requests
// the graph or name checks decide are handled before them.
var nodeRules = []rbacv1.PolicyRule{
	rule(core, []string{"nodes"}, []string{"list", "watch", "create"}),
	rule(core, []string{"pods"}, []string{"get", "list", "watch", "create"}),
	rule(core, []string{"pods/eviction"}, []string{"create"}),
	rule(core, []string{"services", "endpoints"}, read),
	rule([]string{"discovery.k8s.io"}, []string{"endpointslices"}, read),
	rule(core, []string{"events"}, write),
	rule([]string{"events.k8s.io"}, []string{"events"}, write),
	rule([]string{"coordination.k8s.io"}, []string{"leases"}, []string{"create"}),
	rule([]string{"authentication.k8s.io"}, []string{"tokenreviews"}, []string{"create"}),
	rule([]string{"authorization.k8s.io"}, []string{"subjectaccessreviews", "localsubjectaccessreviews"}, []string{"create"}),
	rule([]string{"certificates.k8s.io"}, []string{"certificatesigningrequests"}, []string{"create", "get", "list", "watch"}),
	rule([]string{"storage.k8s.io"}, []string{"csidrivers", "csinodes", "volumeattachments"}, read),
	rule([]string{"node.k8s.io"}, []string{"runtimeclasses"}, read),
}

// NodeRules returns a copy of the rules every node has beyond its own
// objects (the system:node cluster role carries the same).
func NodeRules() []rbacv1.PolicyRule {
	out := make([]rbacv1.PolicyRule, len(nodeRules))
	for i, r := range nodeRules {
		out[i] = *r.DeepCopy()
	}
	return out
}

// Decide implements authz.Authorizer. Requests of non-node users get no
// opinion; so do node requests this authorizer refuses, with upstream's
// reason, leaving RBAC the last word.
func (a *Authorizer) Decide(_ context.Context, u *apiserver.UserInfo, info *apiserver.RequestInfo) (authz.Decision, string, error) {
	node, ok := NodeName(u)
	if !ok {
		return authz.NoOpinion, "", nil
	}
	if !info.IsResourceRequest {
		return authz.NoOpinion, "", nil
	}
	switch {
	case info.APIGroup == "" && info.Subresource == "" && (info.Resource == "secrets" || info.Resource == "configmaps"):
		return a.graphRead(node, map[string]string{"secrets": kindSecret, "configmaps": kindConfigMap}[info.Resource], info)
	case info.APIGroup == "" && info.Subresource == "" && info.Resource == "persistentvolumeclaims":
		return a.graphGet(node, kindPVC, info)
	case info.APIGroup == "" && info.Resource == "serviceaccounts" && info.Subresource == "token":
		if info.Verb != "create" {
			return authz.NoOpinion, "can only create tokens for individual service accounts", nil
		}
		return a.related(node, kindServiceAccount, info)
	case info.APIGroup == "" && info.Resource == "nodes":
		return ownName(node, info, "nodes", []string{"get", "update", "patch", "delete"})
	case info.APIGroup == "coordination.k8s.io" && info.Resource == "leases":
		if info.Namespace != LeaseNamespace {
			return authz.NoOpinion, "", nil
		}
		return ownName(node, info, "leases", []string{"get", "update", "patch", "delete"})
	case info.APIGroup == "" && info.Resource == "pods" && (info.Subresource == "status" && (info.Verb == "update" || info.Verb == "patch" || info.Verb == "get") || info.Subresource == "" && info.Verb == "delete"):
		if info.Name == "" {
			return authz.NoOpinion, "", nil
		}
		if a.Graph.PodNode(info.Namespace, info.Name) != node {
			return authz.NoOpinion, fmt.Sprintf("no relationship found between node '%s' and this object", node), nil
		}
		return authz.Allow, "", nil
	case info.APIGroup == "" && info.Resource == "persistentvolumeclaims" && info.Subresource == "status":
		return authz.NoOpinion, "", nil
	case info.APIGroup == "" && info.Resource == "persistentvolumes" && info.Subresource == "":
		return a.volumeGet(node, info)
	}
	if rbac.RulesAllow(authz.Request(u, info), nodeRules) {
		return authz.Allow, "", nil
	}
	return authz.NoOpinion, "", nil
}

// volumeGet allows get of a volume bound to a claim a pod of node uses.
func (a *Authorizer) volumeGet(node string, info *apiserver.RequestInfo) (authz.Decision, string, error) {
	if info.Verb != "get" {
		return authz.NoOpinion, "can only get individual resources of this type", nil
	}
	if info.Name == "" {
		return authz.NoOpinion, "No Object name found", nil
	}
	if a.ClaimVolume != nil {
		for _, claim := range a.Graph.Claims(node) {
			ns, name, _ := strings.Cut(claim, "/")
			if a.ClaimVolume(ns, name) == info.Name {
				return authz.Allow, "", nil
			}
		}
	}
	return authz.NoOpinion, fmt.Sprintf("no relationship found between node '%s' and this object", node), nil
}

// graphGet allows get of one object referenced by a pod of node.
func (a *Authorizer) graphGet(node, kind string, info *apiserver.RequestInfo) (authz.Decision, string, error) {
	if info.Verb != "get" {
		return authz.NoOpinion, "can only get individual resources of this type", nil
	}
	return a.related(node, kind, info)
}

// graphRead allows get, and list and watch of one object by name (a
// metadata.name field selector: the agent watches the ConfigMaps and
// Secrets its pods use), of an object referenced by a pod of node, as
// upstream's authorizeReadNamespacedObject.
func (a *Authorizer) graphRead(node, kind string, info *apiserver.RequestInfo) (authz.Decision, string, error) {
	switch info.Verb {
	case "get", "list", "watch":
	default:
		return authz.NoOpinion, "can only read resources of this type", nil
	}
	if info.Namespace == "" {
		return authz.NoOpinion, "can only read namespaced object of this type", nil
	}
	return a.related(node, kind, info)
}

func (a *Authorizer) related(node, kind string, info *apiserver.RequestInfo) (authz.Decision, string, error) {
	if info.Name == "" {
		return authz.NoOpinion, "No Object name found", nil
	}
	if !a.Graph.References(node, kind, info.Namespace, info.Name) {
		return authz.NoOpinion, fmt.Sprintf("no relationship found between node '%s' and this object", node), nil
	}
	return authz.Allow, "", nil
}

// ownName allows verbs on the node's own object (its Node, its Lease, and
// their subresources); create, list and watch fall through to nodeRules.
func ownName(node string, info *apiserver.RequestInfo, resource string, verbs []string) (authz.Decision, string, error) {
	if info.Name == "" {
		if rbac.RulesAllow(&rbac.Request{ResourceRequest: true, Verb: info.Verb, APIGroup: info.APIGroup, Resource: info.Resource, Subresource: info.Subresource}, nodeRules) {
			return authz.Allow, "", nil
		}
		return authz.NoOpinion, "", nil
	}
	allowed := false
	for _, v := range verbs {
		allowed = allowed || v == info.Verb
	}
	if info.Subresource != "" && info.Subresource != "status" {
		allowed = false
	}
	if !allowed {
		return authz.NoOpinion, "", nil
	}
	if info.Name != node {
		return authz.NoOpinion, fmt.Sprintf("node '%s' cannot access %s '%s'", node, strings.TrimSuffix(resource, "s"), info.Name), nil
	}
	return authz.Allow, "", nil
}
