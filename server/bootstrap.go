package server

import (
	"context"
	"fmt"
	"time"

	"github.com/skiffhq/skiff/controlplane/apiserver"
	"github.com/skiffhq/skiff/controlplane/authz/bootstrap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// bootstrap creates the objects every cluster starts with.
func (s *Server) bootstrap(ctx context.Context) error {
	for _, name := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
		if err := s.api.Ensure(ctx, "", "v1", "namespaces", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
			return err
		}
	}
	if err := s.bootstrapPolicy(ctx); err != nil {
		return err
	}
	if err := s.waitForPolicy(ctx); err != nil {
		return err
	}
	if err := s.ensureDefaultStorageClass(ctx); err != nil {
		return err
	}
	return s.ensureKubernetesService(ctx)
}

// waitForPolicy waits until the authorizer, which follows the watch
// cache, has seen the default policy just written: the components started
// next use their own identities at once.
func (s *Server) waitForPolicy(ctx context.Context) error {
	u := &apiserver.UserInfo{Name: bootstrap.UserKubernetesService, Groups: []string{"system:authenticated"}}
	info := &apiserver.RequestInfo{IsResourceRequest: true, Verb: "get", APIVersion: "v1", Resource: "services", Namespace: "default", Name: "kubernetes"}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		if ok, _, _ := s.authz.chain.Authorize(ctx, u, info); ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("default RBAC policy not in force: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// startLoops starts the in-process control loops.
func (s *Server) startLoops(ctx context.Context) {
	s.startServiceRepair(ctx)
	s.startClusterRoleAggregation(ctx)
	s.startKubernetesService(ctx)
	s.startControllerManager(ctx)
	s.startNodeJoin(ctx)
	s.startScheduler(ctx)
	s.startDNS(ctx) // before the agent: the agent publishes kube-dns
	s.startNodeAgent(ctx)
	s.startIngress(ctx)
	s.startMetrics(ctx)
	s.startDashboard(ctx)
	s.startFederation(ctx)
}

var _ runtime.Object = (*corev1.Namespace)(nil)
