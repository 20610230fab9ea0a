package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	"github.com/google/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// DefaultMetricsBindAddress is where `skiff scheduler` serves /metrics.
const DefaultMetricsBindAddress = "127.0.0.1:10259"

// StandaloneConfig configures `skiff scheduler`.
type StandaloneConfig struct {
	Client kubernetes.Interface
	Config *Configuration
	// LeaderElect runs the scheduler only while holding the Lease
	// LeaseNamespace/LeaseName (default kube-system/kube-scheduler).
	LeaderElect                               bool
	LeaseNamespace, LeaseName                 string
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// MetricsBindAddress serves /metrics and /healthz (empty = off).
	MetricsBindAddress string
	// Profiling serves Go's /debug/pprof/ on the metrics address, as
	// kube-scheduler's --profiling does.
	Profiling bool
	Logger    *slog.Logger
	// OnListen, when set, is told the metrics listener's address.
	OnListen func(addr string)
}

// RunStandalone runs a scheduler with its metrics endpoint and, when
// asked, leader election; it blocks until ctx ends or leadership is lost.
func RunStandalone(ctx context.Context, c StandaloneConfig) error {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	sched, err := New(Options{Client: c.Client, Config: c.Config, Logger: c.Logger, ProcessMetrics: true})
	if err != nil {
		return err
	}
	if c.MetricsBindAddress != "" {
		ln, err := net.Listen("tcp", c.MetricsBindAddress)
		if err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", sched.MetricsHandler())
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
		if c.Profiling {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				c.Logger.Error("scheduler metrics", "err", err)
			}
		}()
		defer srv.Close()
		if c.OnListen != nil {
			c.OnListen(ln.Addr().String())
		}
	}
	if !c.LeaderElect {
		return sched.Run(ctx)
	}
	if c.LeaseNamespace == "" {
		c.LeaseNamespace = "kube-system"
	}
	if c.LeaseName == "" {
		c.LeaseName = "kube-scheduler"
	}
	if c.LeaseDuration == 0 {
		c.LeaseDuration, c.RenewDeadline, c.RetryPeriod = 15*time.Second, 10*time.Second, 2*time.Second
	}
	host, _ := os.Hostname()
	id := host + "_" + uuid.NewString()
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, c.LeaseNamespace, c.LeaseName, nil, c.Client.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: id})
	if err != nil {
		return fmt.Errorf("leader election lock: %w", err)
	}
	runErr := make(chan error, 1)
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   c.LeaseDuration,
		RenewDeadline:   c.RenewDeadline,
		RetryPeriod:     c.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            c.LeaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				c.Logger.Info("became leader", "lease", c.LeaseNamespace+"/"+c.LeaseName, "identity", id)
				runErr <- sched.Run(ctx)
			},
			OnStoppedLeading: func() { c.Logger.Info("stopped leading", "identity", id) },
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	le.Run(ctx)
	select {
	case err := <-runErr:
		if err != nil {
			return err
		}
	default:
	}
	if ctx.Err() == nil {
		return errors.New("leader election lost")
	}
	return nil
}
