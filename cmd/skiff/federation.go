package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/skiffhq/skiff/addons/federation"
	"github.com/skiffhq/skiff/controlplane/leaderelect"
	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
)

func federationCmd() *cobra.Command {
	var (
		api    apiFlags
		health string
		opts   federation.Options
		elect  bool
		le     leaderelect.Config
	)
	cmd := &cobra.Command{
		Use:   "federation",
		Short: "Run the federation add-on against a host cluster: place workloads on member clusters and fail over between them",
		RunE: func(cmd *cobra.Command, args []string) error {
			rc, err := api.config("skiff-federation", 50, 100)
			if err != nil {
				return err
			}
			reg := prometheus.NewRegistry()
			opts.Config, opts.Logger, opts.Registerer = rc, slog.Default(), reg
			c, err := federation.New(opts)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if health != "" {
				mux := http.NewServeMux()
				mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
				mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
					if !c.Ready() {
						http.Error(w, "not ready", http.StatusServiceUnavailable)
						return
					}
					_, _ = w.Write([]byte("ok"))
				})
				mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
				srv := &http.Server{Addr: health, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
				go func() {
					if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
						slog.Error("federation health server", "err", err)
					}
				}()
				defer func() {
					sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					_ = srv.Shutdown(sctx)
				}()
			}
			if !elect {
				return c.Run(ctx)
			}
			cs, err := kubernetes.NewForConfig(rc)
			if err != nil {
				return fmt.Errorf("client: %w", err)
			}
			le.Client, le.Logger = cs.CoordinationV1(), slog.Default()
			return federation.RunElected(ctx, c, le)
		},
	}
	f := cmd.Flags()
	api.register(f, "kubeconfig of the HOST cluster (the identity needs the federation.skiff.io API, CRDs, Secrets, Events, every kind it propagates, and with --leader-elect the Lease)")
	f.DurationVar(&opts.HeartbeatInterval, "heartbeat-interval", 10*time.Second, "how often each member cluster is health-checked")
	f.DurationVar(&opts.FailureGrace, "failure-grace-period", 40*time.Second, "how long a Ready member may fail its checks before it is NotReady and tainted")
	f.DurationVar(&opts.RecoveryGrace, "recovery-grace-period", 30*time.Second, "how long a NotReady member must pass its checks before it is Ready again")
	f.DurationVar(&opts.MemberTimeout, "member-timeout", 5*time.Second, "timeout of each call to a member cluster")
	f.DurationVar(&opts.ResyncInterval, "resync-interval", 10*time.Second, "how often federated objects are re-applied and their members' status collected")
	f.IntVar(&opts.Workers, "workers", 4, "objects reconciled concurrently")
	f.BoolVar(&elect, "leader-elect", true, "run only while holding the Lease that servers started with --enable federation hold too; exit when it is lost")
	f.StringVar(&le.Namespace, "leader-elect-resource-namespace", "kube-system", "namespace of the leader Lease")
	f.StringVar(&le.Name, "leader-elect-resource-name", federation.LeaseName, "name of the leader Lease")
	f.DurationVar(&le.LeaseDuration, "leader-elect-lease-duration", 15*time.Second, "how long a non-leader waits before taking over")
	f.DurationVar(&le.RenewDeadline, "leader-elect-renew-deadline", 10*time.Second, "how long the leader retries renewing before giving up")
	f.DurationVar(&le.RetryPeriod, "leader-elect-retry-period", 2*time.Second, "wait between leader election attempts")
	f.StringVar(&health, "health-address", "127.0.0.1:8085", "address serving /healthz, /readyz and /metrics over plain HTTP (empty = off)")
	return cmd
}
