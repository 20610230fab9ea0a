package server

import (
	"context"
	"slices"
	"time"

	"github.com/skiffhq/skiff/addons/federation"
)

// enabled reports whether an opt-in add-on is listed in --enable.
func (s *Server) enabled(name string) bool { return slices.Contains(s.cfg.Enable, name) }

// federationLease is the Lease, in kube-system, held by the one server
// that runs the federation add-on when other servers may run it too.
const federationLease = federation.LeaseName

// federationRetry is how long a term waits before running the add-on
// again after it failed (say, its CRDs could not be installed).
const federationRetry = 5 * time.Second

// startFederation runs the federation add-on (addons/federation) with this
// server as the host cluster when `--enable federation` is given. Its
// identity is in system:masters: it propagates any kind a policy names.
// Run the host with --controllers=*,-deployment-controller so that the
// host's own deployment controller does not write federated Deployments'
// status (see addons/federation/README.md). With other servers (HA, or an
// external datastore) it runs only on the server holding the Lease
// kube-system/skiff-federation (see runSingleton), which runs the same
// Controller again in each term.
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
	s.federation = c
	s.runSingleton(ctx, federationLease, func(ctx context.Context) {
		// A term that holds the Lease keeps trying: giving up would
		// leave the add-on stopped on every server.
		keepRunning(ctx, s.log, federationLease, federationRetry, c.Run)
	})
}

// Federation is the federation add-on (nil unless enabled). In HA it is
// running, Ready, only on the server holding its Lease.
func (s *Server) Federation() *federation.Controller { return s.federation }
