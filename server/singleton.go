package server

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"time"

	"github.com/google/uuid"

	"github.com/skiffhq/skiff/controlplane/authz"
	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/leaderelect"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// electSingletons reports whether other servers may run this server's
// control-plane loops too: HA on embedded etcd, or an external datastore.
// Each such loop then runs only on the server holding its Lease.
func (s *Server) electSingletons() bool {
	return s.haEnabled() || len(s.cfg.DatastoreEndpoints) > 0
}

// runSingleton runs lead on its own goroutine until ctx ends: directly on
// a lone server; under the Lease kube-system/<lease> when other servers
// may run it too, campaigning again whenever the Lease is lost (a server
// cut off from etcd's quorum cannot renew it, and another takes over
// once it expires). lead must stop when its context ends; it is called
// afresh for every term, so it builds its loop (informers included) anew.
func (s *Server) runSingleton(ctx context.Context, lease string, lead func(context.Context)) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if !s.electSingletons() {
			lead(ctx)
			return
		}
		// The server's loopback identity: the loops' own identities may
		// not all write Leases.
		cs, err := s.componentClient("system:apiserver", authz.SystemMasters)
		if err != nil {
			s.log.Error("leader election client", "lease", lease, "err", err)
			return
		}
		err = leaderelect.Run(ctx, leaderelect.Config{
			Client: cs.CoordinationV1(), Namespace: metav1.NamespaceSystem, Name: lease,
			Identity: s.leaseIdentity(), Again: true, Logger: s.log,
		}, lead)
		if err != nil && !errors.Is(err, context.Canceled) {
			s.log.Error("leader election", "lease", lease, "err", err)
		}
	}()
}

// runElectedController runs the controller mk builds as a singleton (see
// runSingleton), a new one for every term. A controller that fails is
// built and run again (see keepRunning): the server holding the Lease
// must not hold it with the loop stopped.
func (s *Server) runElectedController(ctx context.Context, lease string, mk func() controllers.Controller, workers int) {
	s.runSingleton(ctx, lease, func(ctx context.Context) {
		keepRunning(ctx, s.log, lease, controllerRetry, func(ctx context.Context) error {
			return mk().Run(ctx, workers)
		})
	})
}

// controllerRetry is how long keepRunning waits before running a failed
// loop again.
const controllerRetry = 5 * time.Second

// keepRunning calls run until ctx ends, again after retry whenever it
// fails. A run that returns nil while ctx lasts has finished its work and
// is not repeated.
func keepRunning(ctx context.Context, log *slog.Logger, name string, retry time.Duration, run func(context.Context) error) {
	for {
		err := run(ctx)
		if ctx.Err() != nil || err == nil {
			return
		}
		log.Error("stopped; running it again", "loop", name, "err", err, "after", retry)
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
	}
}

// leaseIdentity names this server as a Lease holder: its advertised
// address in HA (so an operator sees which server leads), else the host
// name, and a per-process UUID (upstream's hostname_uuid form).
func (s *Server) leaseIdentity() string {
	host := s.advertiseAddress()
	if !s.haEnabled() {
		host, _ = os.Hostname()
	}
	return host + "_" + uuid.NewString()
}
