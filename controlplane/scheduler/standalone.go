package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/skiffhq/skiff/controlplane/leaderelect"
	"k8s.io/client-go/kubernetes"
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
	var runErr error
	err = leaderelect.Run(ctx, leaderelect.Config{
		Client: c.Client.CoordinationV1(), Namespace: c.LeaseNamespace, Name: c.LeaseName,
		LeaseDuration: c.LeaseDuration, RenewDeadline: c.RenewDeadline, RetryPeriod: c.RetryPeriod, Logger: c.Logger,
	}, func(ctx context.Context) { runErr = sched.Run(ctx) })
	if err != nil {
		return err // the Lease was lost: exit, as kube-scheduler does
	}
	if runErr != nil && ctx.Err() == nil {
		return runErr
	}
	return nil
}
