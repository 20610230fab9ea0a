package server

import (
	"context"

	"github.com/skiffhq/skiff/controlplane/controllers/manager"
)

// startControllerManager runs the controller manager in-process as
// system:kube-controller-manager. Leader election is on only with an
// external datastore, where other servers may run their own manager.
func (s *Server) startControllerManager(ctx context.Context) {
	if s.disabled("controller-manager") || s.disabled("kube-controller-manager") {
		return
	}
	rc, err := s.ComponentConfig("system:kube-controller-manager", nil)
	if err != nil {
		s.log.Error("controller manager identity", "err", err)
		return
	}
	m, err := manager.New(manager.Config{
		RestConfig:         rc,
		Controllers:        s.cfg.Controllers,
		Disable:            s.cfg.Disable,
		LeaderElect:        len(s.cfg.DatastoreEndpoints) > 0,
		MetricsBindAddress: s.cfg.ControllerManagerMetricsAddress,
		RootCA:             s.ca.CertPEM,
		ClusterCIDR:        s.cfg.ClusterCIDR,
		NodeLifecycle:      manager.NodeLifecycleConfig{MonitorGracePeriod: s.cfg.NodeMonitorGracePeriod},
		Logger:             s.cfg.Logger,
	})
	if err != nil {
		s.log.Error("controller manager", "err", err)
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := m.Run(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("controller manager stopped", "err", err)
		}
	}()
}
