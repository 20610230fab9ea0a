package server

import (
	"context"

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
	return s.ensureKubernetesService(ctx)
}

// startLoops starts the in-process control loops.
func (s *Server) startLoops(ctx context.Context) {
	s.startServiceRepair(ctx)
	s.startClusterRoleAggregation(ctx)
	s.startKubernetesService(ctx)
	s.startControllerManager(ctx)
	s.startNodeJoin(ctx)
	s.startScheduler(ctx)
	s.startNodeAgent(ctx)
	s.startDNS(ctx)
}

var _ runtime.Object = (*corev1.Namespace)(nil)
