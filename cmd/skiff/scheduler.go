package main

import (
	"fmt"
	"log/slog"

	"github.com/skiffhq/skiff/controlplane/scheduler"
	"github.com/skiffhq/skiff/internal/cpuprofile"
	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
)

func schedulerCmd() *cobra.Command {
	var (
		api        apiFlags
		configFile string
		cpuProfile string
		cfg        scheduler.StandaloneConfig
	)
	cmd := &cobra.Command{
		Use:   "scheduler",
		Short: "Run the scheduler against an API server (like kube-scheduler)",
		RunE: func(cmd *cobra.Command, args []string) error {
			var conf *scheduler.Configuration
			if configFile != "" {
				c, err := scheduler.LoadConfig(configFile)
				if err != nil {
					return err
				}
				conf = c
				if cc := c.ClientConnection; cc != nil && cc.Kubeconfig != "" && api.kubeconfig == "" {
					api.kubeconfig = cc.Kubeconfig
				}
				if le := c.LeaderElection; le != nil && !cmd.Flags().Changed("leader-elect") {
					cfg.LeaderElect = c.LeaderElect()
					if le.ResourceName != "" {
						cfg.LeaseName = le.ResourceName
					}
					if le.ResourceNamespace != "" {
						cfg.LeaseNamespace = le.ResourceNamespace
					}
				}
			}
			qps, burst := float32(-1), 0
			cc := &scheduler.ClientConnection{}
			if conf != nil && conf.ClientConnection != nil {
				cc = conf.ClientConnection
			}
			if cc.QPS > 0 {
				qps, burst = cc.QPS, int(cc.Burst)
			}
			rc, err := api.config("skiff-scheduler", qps, burst)
			if err != nil {
				return err
			}
			if err := setContentType(rc, cc.ContentType, cc.AcceptContentTypes); err != nil {
				return fmt.Errorf("clientConnection: %w", err)
			}
			cs, err := kubernetes.NewForConfig(rc)
			if err != nil {
				return fmt.Errorf("client: %w", err)
			}
			cfg.Client, cfg.Config, cfg.Logger = cs, conf, slog.Default()
			stopProfile, err := cpuprofile.Start(cpuProfile)
			if err != nil {
				return err
			}
			defer stopProfile()
			return scheduler.RunStandalone(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	api.register(f, "kubeconfig with the API server's address and the scheduler's credentials")
	f.StringVar(&configFile, "config", "", "KubeSchedulerConfiguration file (kubescheduler.config.k8s.io/v1): profiles, plugins, weights, plugin args")
	f.BoolVar(&cfg.LeaderElect, "leader-elect", true, "schedule only while holding the leader Lease")
	f.StringVar(&cfg.LeaseNamespace, "leader-elect-resource-namespace", "kube-system", "namespace of the leader Lease")
	f.StringVar(&cfg.LeaseName, "leader-elect-resource-name", "kube-scheduler", "name of the leader Lease")
	f.DurationVar(&cfg.LeaseDuration, "leader-elect-lease-duration", 15e9, "how long a non-leader waits before taking over")
	f.DurationVar(&cfg.RenewDeadline, "leader-elect-renew-deadline", 10e9, "how long the leader retries renewing before giving up")
	f.DurationVar(&cfg.RetryPeriod, "leader-elect-retry-period", 2e9, "wait between leader election attempts")
	f.StringVar(&cfg.MetricsBindAddress, "metrics-bind-address", scheduler.DefaultMetricsBindAddress, "address serving /metrics and /healthz over plain HTTP (empty = off)")
	f.BoolVar(&cfg.Profiling, "profiling", true, "serve /debug/pprof/ on the metrics address")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the scheduler to this file until it stops (benchmarks)")
	return cmd
}
