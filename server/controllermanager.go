package server

import (
	"context"
	"path/filepath"

	"github.com/skiffhq/skiff/controlplane/controllers/manager"
	"github.com/skiffhq/skiff/controlplane/controllers/nodeipam"
	"k8s.io/client-go/rest"
)

// startControllerManager runs the controller manager in-process as
// system:kube-controller-manager. With other servers (HA, or an external
// datastore) it runs only while holding the Lease
// kube-system/kube-controller-manager, and campaigns again after losing it.
func (s *Server) startControllerManager(ctx context.Context) {
	if s.disabled("controller-manager") || s.disabled("kube-controller-manager") {
		return
	}
	rc, err := s.ComponentConfig("system:kube-controller-manager", nil)
	if err != nil {
		s.log.Error("controller manager identity", "err", err)
		return
	}
	preferProtobuf(rc)
	m, err := manager.New(manager.Config{
		RestConfig:         rc,
		Controllers:        s.cfg.Controllers,
		Disable:            s.cfg.Disable,
		LeaderElect:        s.electSingletons(),
		Recampaign:         true,
		Identity:           s.leaseIdentity(),
		MetricsBindAddress: s.cfg.ControllerManagerMetricsAddress,
		RootCA:             s.ca.CertPEM,
		ClusterCIDR:        s.cfg.ClusterCIDR,
		NodeLifecycle:      manager.NodeLifecycleConfig{MonitorGracePeriod: s.cfg.NodeMonitorGracePeriod},
		StorageDir:         filepath.Join(s.cfg.DataDir, "storage"),
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

// nodeIPAMEnabled reports whether this server's controller manager gives
// nodes their pod ranges (then the node agent waits for one).
func (s *Server) nodeIPAMEnabled() bool {
	if s.disabled("controller-manager") || s.disabled("kube-controller-manager") || s.cfg.ClusterCIDR == "" {
		return false
	}
	specs := manager.Specs()
	sel, err := manager.ParseSelection(s.cfg.Controllers, specs)
	if err != nil {
		return false
	}
	sel.Disable(s.cfg.Disable, specs)
	for _, sp := range specs {
		if sp.Name == nodeipam.Name {
			return sel.Enabled(sp)
		}
	}
	return false
}

// preferProtobuf makes rc's typed clients speak Kubernetes protobuf, with
// JSON accepted for what has no protobuf form, as kube-controller-manager
// and kube-scheduler do (their clientConnection.contentType default).
// Dynamic clients made from rc still use JSON.
func preferProtobuf(rc *rest.Config) {
	rc.ContentType = "application/vnd.kubernetes.protobuf"
	rc.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
}
