package server

import (
	"context"

	"github.com/skiffhq/skiff/controlplane/scheduler"
	"k8s.io/client-go/kubernetes"
)

// SchedulerName is the --disable name of the in-process scheduler.
const SchedulerName = "scheduler"

// startScheduler runs kube-scheduler's equivalent in-process with its own
// identity and the default profile. Its /metrics is not served inside the
// server (run `skiff scheduler` for a configurable, separately served one).
func (s *Server) startScheduler(ctx context.Context) {
	if s.disabled(SchedulerName) {
		return
	}
	rc, err := s.ComponentConfig("system:kube-scheduler", nil)
	if err != nil {
		s.log.Error("scheduler identity", "err", err)
		return
	}
	preferProtobuf(rc)
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		s.log.Error("scheduler client", "err", err)
		return
	}
	// One scheduler per cluster: with several servers, the one holding
	// the Lease kube-system/kube-scheduler (upstream's name).
	s.runSingleton(ctx, "kube-scheduler", func(ctx context.Context) {
		sched, err := scheduler.New(scheduler.Options{Client: cs, Logger: s.cfg.Logger})
		if err != nil {
			s.log.Error("scheduler", "err", err)
			return
		}
		if err := sched.Run(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("scheduler stopped", "err", err)
		}
	})
}
