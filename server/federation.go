package server

import (
	"context"
	"slices"

	"github.com/skiffhq/skiff/addons/federation"
)

// enabled reports whether an opt-in add-on is listed in --enable.
func (s *Server) enabled(name string) bool { return slices.Contains(s.cfg.Enable, name) }

// startFederation runs the federation add-on (addons/federation) with this
// server as the host cluster when `--enable federation` is given. Its
// identity is in system:masters: it propagates any kind a policy names.
// Run the host with --controllers=*,-deployment-controller so that the
// host's own deployment controller does not write federated Deployments'
// status (see addons/federation/README.md).
func (s *Server) startFederation(ctx context.Context) {
	if !s.enabled(federation.Name) {
		return
	}
	rc, err := s.ComponentConfig("system:skiff-federation", []string{"system:masters"})
	if err != nil {
		s.log.Error("federation identity", "err", err)
		return
	}
	rc.QPS, rc.Burst = 50, 100
	c, err := federation.New(federation.Options{Config: rc, Registerer: s.api.MetricsRegistry(), Logger: s.cfg.Logger})
	if err != nil {
		s.log.Error("federation", "err", err)
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := c.Run(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("federation stopped", "err", err)
		}
	}()
}
