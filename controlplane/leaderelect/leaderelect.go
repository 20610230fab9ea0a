// Package leaderelect runs a loop only while this process holds a
// coordination.k8s.io Lease, as upstream's components do with
// client-go's leader election, and, for loops inside a long-lived
// process (the control-plane loops of an HA `skiff server`), campaigns
// again after losing the Lease instead of exiting.
package leaderelect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// ErrLost is returned by Run without Again when the Lease was lost.
var ErrLost = errors.New("leader election lost")

// Config names the Lease and the timings.
type Config struct {
	Client          coordinationv1.LeasesGetter
	Namespace, Name string
	// Identity in the Lease (default hostname_uuid).
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod default to upstream's
	// 15 s, 10 s and 2 s.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Again campaigns anew after the Lease is lost; otherwise Run returns
	// ErrLost (a standalone component exits, as upstream's do).
	Again  bool
	Logger *slog.Logger
}

// DefaultIdentity is hostname_uuid, upstream's form.
func DefaultIdentity() string {
	host, _ := os.Hostname()
	return host + "_" + uuid.NewString()
}

// Run campaigns for the Lease and calls lead while holding it. lead's
// context ends when the Lease is lost or ctx ends, and Run waits for lead
// to return before it campaigns again (with Again) or returns. It returns
// nil when ctx ends.
func Run(ctx context.Context, c Config, lead func(context.Context)) error {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Identity == "" {
		c.Identity = DefaultIdentity()
	}
	if c.LeaseDuration == 0 {
		c.LeaseDuration, c.RenewDeadline, c.RetryPeriod = 15*time.Second, 10*time.Second, 2*time.Second
	}
	log := c.Logger.With("lease", c.Namespace+"/"+c.Name, "identity", c.Identity)
	for {
		lock := &trackingLock{Interface: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: c.Namespace, Name: c.Name},
			Client:     c.Client,
			LockConfig: resourcelock.ResourceLockConfig{Identity: c.Identity},
		}}
		done := make(chan struct{})
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   c.LeaseDuration,
			RenewDeadline:   c.RenewDeadline,
			RetryPeriod:     c.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            c.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(lctx context.Context) {
					defer close(done)
					log.Info("became leader")
					lead(lctx)
				},
				OnStoppedLeading: func() {},
			},
		})
		if err != nil {
			return fmt.Errorf("leader election %s/%s: %w", c.Namespace, c.Name, err)
		}
		// le.Run returns once renewing failed or ctx ended, without
		// waiting for OnStartedLeading, which runs on its own goroutine
		// and is started exactly when the Lease was first written.
		le.Run(ctx)
		if lock.acquired.Load() {
			<-done
		}
		if ctx.Err() != nil {
			return nil
		}
		if !c.Again {
			return ErrLost
		}
		log.Warn("lost the lease; campaigning again")
	}
}

// trackingLock notes whether this elector ever wrote the Lease (acquired
// it), so Run knows lead was started and must be waited for.
type trackingLock struct {
	resourcelock.Interface
	acquired atomic.Bool
}

func (l *trackingLock) Create(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	err := l.Interface.Create(ctx, r)
	if err == nil {
		l.acquired.Store(true)
	}
	return err
}

func (l *trackingLock) Update(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	err := l.Interface.Update(ctx, r)
	if err == nil {
		l.acquired.Store(true)
	}
	return err
}
