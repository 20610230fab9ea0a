package server

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/skiffhq/skiff/controlplane/apiserver"
	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	"github.com/skiffhq/skiff/controlplane/authz"
	"github.com/skiffhq/skiff/controlplane/authz/bootstrap"
	"github.com/skiffhq/skiff/controlplane/authz/escalation"
	"github.com/skiffhq/skiff/controlplane/authz/node"
	"github.com/skiffhq/skiff/controlplane/authz/rbac"
	"github.com/skiffhq/skiff/controlplane/authz/review"
	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/clusterroleaggregation"
)

// authorization is the server's authorizer chain (node, then RBAC, behind
// system:masters) and the in-memory state it decides from.
type authorization struct {
	index *rbac.Index
	graph *node.Graph
	node  *node.Authorizer
	chain authz.Chain
}

// newAuthorization builds the chain and registers the review APIs.
func newAuthorization(reg *registry.Registry) *authorization {
	a := &authorization{index: rbac.NewIndex(), graph: node.NewGraph()}
	a.node = &node.Authorizer{Graph: a.graph}
	a.chain = authz.Chain{a.node, authz.RBAC{Index: a.index}}
	(&review.Reviews{Authorizer: a.chain, RBAC: a.index}).Register(reg)
	return a
}

// admission returns the admission plugins of authorization.
func (a *authorization) admission() []apiserver.AdmissionPlugin {
	return []apiserver.AdmissionPlugin{node.Restriction{}, &escalation.Plugin{Authorizer: a.chain, Rules: a.index}}
}

// follow loads RBAC objects and pods from the watch cache and keeps them
// current until ctx ends; it returns once they are loaded.
func (s *Server) followAuthorization(ctx context.Context) error {
	prefix := func(group, resource string) (string, error) {
		res, ok := s.api.Registry().Get(group, "v1", resource)
		if !ok {
			return "", fmt.Errorf("authorization: %s %s is not served", group, resource)
		}
		return res.StorageKeyPrefix, nil
	}
	var p rbac.Prefixes
	var err error
	for _, x := range []struct {
		dst      *string
		resource string
	}{{&p.Roles, "roles"}, {&p.ClusterRoles, "clusterroles"}, {&p.RoleBindings, "rolebindings"}, {&p.ClusterRoleBindings, "clusterrolebindings"}} {
		if *x.dst, err = prefix("rbac.authorization.k8s.io", x.resource); err != nil {
			return err
		}
	}
	pods, err := prefix("", "pods")
	if err != nil {
		return err
	}
	claims, err := prefix("", "persistentvolumeclaims")
	if err != nil {
		return err
	}
	s.authz.node.ClaimVolume = func(ns, name string) string {
		o, _, ok := s.cache.Get(claims + ns + "/" + name)
		if !ok {
			return ""
		}
		var pvc struct {
			Spec struct {
				VolumeName string `json:"volumeName"`
			} `json:"spec"`
		}
		if json.Unmarshal(o.Value, &pvc) != nil {
			return ""
		}
		return pvc.Spec.VolumeName
	}
	loadCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	done := make(chan struct{}, 2)
	go func() { s.authz.index.Follow(ctx, s.cache, p, s.cfg.Logger); done <- struct{}{} }()
	go func() { s.authz.graph.Follow(ctx, s.cache, pods, s.cfg.Logger); done <- struct{}{} }()
	for range 2 {
		select {
		case <-done:
		case <-loadCtx.Done():
			return fmt.Errorf("authorization state did not load: %w", loadCtx.Err())
		}
	}
	return nil
}

// bootstrapPolicy reconciles the default roles and bindings, through the
// API as the API server's own privileged identity.
func (s *Server) bootstrapPolicy(ctx context.Context) error {
	cs, err := s.componentClient("system:apiserver", authz.SystemMasters)
	if err != nil {
		return fmt.Errorf("rbac bootstrap identity: %w", err)
	}
	if err := bootstrap.Reconcile(ctx, cs, s.cfg.Logger); err != nil {
		return fmt.Errorf("rbac bootstrap: %w", err)
	}
	return nil
}

// startClusterRoleAggregation runs the aggregation controller with the
// identity upstream gives it.
func (s *Server) startClusterRoleAggregation(ctx context.Context) {
	if s.disabled(clusterroleaggregation.Name) {
		return
	}
	cs, err := s.componentClient(rbac.ServiceAccountUser("kube-system", clusterroleaggregation.Name), "system:serviceaccounts", "system:serviceaccounts:kube-system")
	if err != nil {
		s.log.Error("clusterrole aggregation identity", "err", err)
		return
	}
	s.runElectedController(ctx, "skiff-"+clusterroleaggregation.Name, func() controllers.Controller {
		return clusterroleaggregation.New(clusterroleaggregation.Config{Client: cs, Logger: s.cfg.Logger})
	}, 1)
}
