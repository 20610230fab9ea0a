package scheduler_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/leaderelect"
	"github.com/skiffhq/skiff/controlplane/scheduler"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/nodeagent/hollow"
	"github.com/skiffhq/skiff/server"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

// TestStandaloneLeaderElection: `skiff scheduler` with leader election
// schedules while it holds kube-system/kube-scheduler, and exits with
// ErrLost (as kube-scheduler does) once another holder takes the Lease.
func TestStandaloneLeaderElection(t *testing.T) {
	s := testserver.Start(t, func(c *server.Config) { c.Disable = append(c.Disable, server.SchedulerName) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nodes, err := hollow.Start(ctx, s.Config, hollow.Options{Nodes: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nodes.Stop)
	done := make(chan error, 1)
	go func() {
		done <- scheduler.RunStandalone(ctx, scheduler.StandaloneConfig{
			Client: s.Client, LeaderElect: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			LeaseDuration: 3 * time.Second, RenewDeadline: time.Second, RetryPeriod: 100 * time.Millisecond,
		})
	}()
	e := &env{t: t, ctx: ctx, s: s, client: s.Client}
	e.create(podSpec("led"))
	if got := e.waitRunning("led").Spec.NodeName; got != "hollow-node-0" {
		t.Fatalf("pod on %q, want hollow-node-0", got)
	}
	leases := s.Client.CoordinationV1().Leases("kube-system")
	l, err := leases.Get(ctx, "kube-scheduler", metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
		t.Fatalf("kube-scheduler lease: %v %+v", err, l)
	}
	// The holder renews every 100 ms: retry the takeover on conflict.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		l, err := leases.Get(ctx, "kube-scheduler", metav1.GetOptions{})
		if err != nil {
			return err
		}
		l.Spec.HolderIdentity = ptr.To("intruder")
		l.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
		l.Spec.LeaseDurationSeconds = ptr.To[int32](60)
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, leaderelect.ErrLost) {
			t.Fatalf("RunStandalone after losing the lease: %v, want ErrLost", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("RunStandalone did not return after losing the lease")
	}
}
